-- CreateEnum
CREATE TYPE "AppointmentStatus" AS ENUM ('scheduled', 'cancelled');

-- CreateEnum
CREATE TYPE "SessionStatus" AS ENUM ('pending', 'ready', 'failed');

-- CreateEnum
CREATE TYPE "ParticipantRole" AS ENUM ('moderator', 'participant');

-- CreateEnum
CREATE TYPE "RevocationReason" AS ENUM ('replaced', 'rescheduled', 'reassigned', 'cancelled', 'superseded', 'operator', 'blocked');

-- CreateTable
CREATE TABLE "appointments" (
    "id" UUID NOT NULL,
    "external_id" TEXT NOT NULL,
    "status" "AppointmentStatus" NOT NULL DEFAULT 'scheduled',
    "revision" INTEGER,
    "starts_at" TIMESTAMPTZ(3) NOT NULL,
    "ends_at" TIMESTAMPTZ(3) NOT NULL,
    "time_zone" TEXT,
    "agent_id" TEXT NOT NULL,
    "agent_name" TEXT,
    "customer_id" TEXT NOT NULL,
    "customer_name" TEXT,
    "max_participants" INTEGER NOT NULL DEFAULT 2,
    "waiting_room" BOOLEAN NOT NULL DEFAULT true,
    "recording" BOOLEAN NOT NULL DEFAULT false,
    "agent_opens_at" TIMESTAMPTZ(3) NOT NULL,
    "customer_opens_at" TIMESTAMPTZ(3) NOT NULL,
    "closes_at" TIMESTAMPTZ(3) NOT NULL,
    "provider" TEXT NOT NULL,
    "session_id" TEXT,
    "session_status" "SessionStatus" NOT NULL DEFAULT 'pending',
    "session_attempts" INTEGER NOT NULL DEFAULT 0,
    "session_next_attempt_at" TIMESTAMPTZ(3),
    "session_last_error" TEXT,
    "access_blocked" BOOLEAN NOT NULL DEFAULT false,
    "cancelled_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "appointments_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cancellation_tombstones" (
    "external_id" TEXT NOT NULL,
    "revision" INTEGER,
    "cancelled_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "cancellation_tombstones_pkey" PRIMARY KEY ("external_id")
);

-- CreateTable
CREATE TABLE "join_tokens" (
    "id" UUID NOT NULL,
    "appointment_id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "role" "ParticipantRole" NOT NULL,
    "token_hash" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "session_id" TEXT NOT NULL,
    "issued_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "not_before" TIMESTAMPTZ(3) NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "revoked_at" TIMESTAMPTZ(3),
    "revocation_reason" "RevocationReason",

    CONSTRAINT "join_tokens_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_deliveries" (
    "webhook_id" TEXT NOT NULL,
    "event_type" TEXT NOT NULL,
    "external_id" TEXT,
    "response_status" INTEGER NOT NULL,
    "response_body" JSONB NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("webhook_id")
);

-- CreateTable
CREATE TABLE "audit_events" (
    "id" BIGSERIAL NOT NULL,
    "external_id" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "type" TEXT NOT NULL,
    "actor" TEXT NOT NULL,
    "outcome" TEXT NOT NULL,
    "detail" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "signing_keys" (
    "kid" TEXT NOT NULL,
    "algorithm" TEXT NOT NULL,
    "public_jwk" JSONB NOT NULL,
    "private_key_encrypted" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "rotates_at" TIMESTAMPTZ(3) NOT NULL,
    "published_until" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "signing_keys_pkey" PRIMARY KEY ("kid")
);

-- CreateIndex
CREATE UNIQUE INDEX "appointments_external_id_key" ON "appointments"("external_id");

-- CreateIndex
CREATE INDEX "appointments_agent_id_idx" ON "appointments"("agent_id");

-- CreateIndex
CREATE INDEX "appointments_customer_id_idx" ON "appointments"("customer_id");

-- CreateIndex
CREATE INDEX "appointments_session_queue_idx" ON "appointments"("session_status", "session_next_attempt_at");

-- CreateIndex
CREATE UNIQUE INDEX "join_tokens_token_hash_key" ON "join_tokens"("token_hash");

-- CreateIndex
CREATE INDEX "join_tokens_user_live_idx" ON "join_tokens"("user_id", "revoked_at", "expires_at");

-- CreateIndex
CREATE INDEX "join_tokens_appointment_live_idx" ON "join_tokens"("appointment_id", "revoked_at");

-- CreateIndex
CREATE INDEX "audit_events_external_id_idx" ON "audit_events"("external_id", "id");

-- CreateIndex
CREATE INDEX "signing_keys_published_until_idx" ON "signing_keys"("published_until");

-- AddForeignKey
ALTER TABLE "join_tokens" ADD CONSTRAINT "join_tokens_appointment_id_fkey" FOREIGN KEY ("appointment_id") REFERENCES "appointments"("id") ON DELETE CASCADE ON UPDATE CASCADE;
