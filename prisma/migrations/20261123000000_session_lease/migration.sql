-- AlterTable
ALTER TABLE "appointments" ADD COLUMN "session_claimed_until" TIMESTAMPTZ(3);
