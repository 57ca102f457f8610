-- Enforcement in the room (API.md §3, §8, §10): session room URLs and expiry, presence, provider connections, ejections.

-- CreateEnum
CREATE TYPE "EjectionStatus" AS ENUM ('pending', 'done', 'failed');

-- AlterTable
ALTER TABLE "appointments" ADD COLUMN "session_room_url" TEXT,
ADD COLUMN "session_closes_at" TIMESTAMPTZ(3),
ADD COLUMN "agent_present" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN "agent_present_since" TIMESTAMPTZ(3),
ADD COLUMN "agent_presence_at" TIMESTAMPTZ(3),
ADD COLUMN "customer_present" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN "customer_present_since" TIMESTAMPTZ(3),
ADD COLUMN "customer_presence_at" TIMESTAMPTZ(3);

-- Sessions that exist were made for the appointment's times as they are.
UPDATE "appointments" SET "session_closes_at" = "closes_at" WHERE "session_status" = 'ready';

-- CreateIndex
CREATE INDEX "appointments_session_id_idx" ON "appointments"("session_id");

-- CreateTable
CREATE TABLE "provider_connections" (
    "provider" TEXT NOT NULL,
    "connection_id" TEXT NOT NULL,
    "appointment_id" UUID NOT NULL,
    "session_id" TEXT NOT NULL,
    "token_id" UUID,
    "user_id" TEXT NOT NULL,
    "role" "ParticipantRole" NOT NULL,
    "connected_at" TIMESTAMPTZ(3),
    "disconnected_at" TIMESTAMPTZ(3),
    "recorded_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "provider_connections_pkey" PRIMARY KEY ("provider","connection_id")
);

-- CreateIndex
CREATE INDEX "provider_connections_appointment_user_idx" ON "provider_connections"("appointment_id", "user_id");

-- AddForeignKey
ALTER TABLE "provider_connections" ADD CONSTRAINT "provider_connections_appointment_id_fkey" FOREIGN KEY ("appointment_id") REFERENCES "appointments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- CreateTable
CREATE TABLE "ejections" (
    "id" BIGSERIAL NOT NULL,
    "appointment_id" UUID NOT NULL,
    "external_id" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "session_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "role" "ParticipantRole" NOT NULL,
    "token_id" UUID,
    "reason" TEXT NOT NULL,
    "status" "EjectionStatus" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL,
    "give_up_at" TIMESTAMPTZ(3) NOT NULL,
    "claimed_until" TIMESTAMPTZ(3),
    "outcome" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "ejections_pkey" PRIMARY KEY ("id")
);

-- One removal per revoked token, and one per participant when the window closes: made once across replicas and restarts.
CREATE UNIQUE INDEX "ejections_token_id_key" ON "ejections"("token_id");
CREATE UNIQUE INDEX "ejections_close_key" ON "ejections"("appointment_id", "user_id", "reason") WHERE token_id IS NULL;

-- CreateIndex
CREATE INDEX "ejections_queue_idx" ON "ejections"("next_attempt_at") WHERE status = 'pending';

-- AddForeignKey
ALTER TABLE "ejections" ADD CONSTRAINT "ejections_appointment_id_fkey" FOREIGN KEY ("appointment_id") REFERENCES "appointments"("id") ON DELETE CASCADE ON UPDATE CASCADE;
