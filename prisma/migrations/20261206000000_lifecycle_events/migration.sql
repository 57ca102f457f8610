-- Lifecycle events out (API.md §9): the outbox, subscriptions, their deliveries and attempts, and timed events.

-- CreateEnum
CREATE TYPE "SubscriptionStatus" AS ENUM ('active', 'disabled');

-- CreateEnum
CREATE TYPE "DeliveryStatus" AS ENUM ('pending', 'delivered', 'failed');

-- AlterTable
ALTER TABLE "appointments" ADD COLUMN "timed_events_emitted" TEXT[] NOT NULL DEFAULT '{}',
ADD COLUMN "next_timed_event_at" TIMESTAMPTZ(3);

-- Appointments whose window is still open get their timed events from now on. Those already due are emitted
-- at once (late, with their own instant); no subscription exists yet, so nobody receives the backlog.
UPDATE "appointments" SET "next_timed_event_at" = LEAST("agent_opens_at", "customer_opens_at")
WHERE "status" = 'scheduled' AND "closes_at" > now();

-- CreateTable
CREATE TABLE "outbox_events" (
    "id" BIGSERIAL NOT NULL,
    "event_id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "type" TEXT NOT NULL,
    "external_id" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "data" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "outbox_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "subscriptions" (
    "id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "events" TEXT[] NOT NULL DEFAULT '{}',
    "description" TEXT,
    "status" "SubscriptionStatus" NOT NULL DEFAULT 'active',
    "secret_encrypted" TEXT NOT NULL,
    "previous_secret_encrypted" TEXT,
    "previous_secret_expires_at" TIMESTAMPTZ(3),
    "failing_since" TIMESTAMPTZ(3),
    "disabled_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "subscriptions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "subscription_deliveries" (
    "id" BIGSERIAL NOT NULL,
    "subscription_id" UUID NOT NULL,
    "event_id" UUID NOT NULL,
    "sequence" BIGINT NOT NULL,
    "type" TEXT NOT NULL,
    "external_id" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "data" JSONB NOT NULL,
    "event_created_at" TIMESTAMPTZ(3) NOT NULL,
    "status" "DeliveryStatus" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3),
    "claimed_until" TIMESTAMPTZ(3),
    "last_outcome" TEXT,
    "delivered_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "subscription_deliveries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "subscription_attempts" (
    "id" BIGSERIAL NOT NULL,
    "subscription_id" UUID NOT NULL,
    "delivery_id" BIGINT NOT NULL,
    "event_id" UUID NOT NULL,
    "type" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "outcome" TEXT NOT NULL,
    "duration_ms" INTEGER NOT NULL,
    "next_attempt_at" TIMESTAMPTZ(3),
    "error" TEXT,

    CONSTRAINT "subscription_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "appointments_timed_events_idx" ON "appointments"("next_timed_event_at") WHERE next_timed_event_at IS NOT NULL;

-- CreateIndex
CREATE UNIQUE INDEX "subscription_deliveries_subscription_event_key" ON "subscription_deliveries"("subscription_id", "event_id");

-- CreateIndex
CREATE INDEX "subscription_deliveries_queue_idx" ON "subscription_deliveries"("subscription_id", "next_attempt_at") WHERE status = 'pending';

-- CreateIndex
CREATE INDEX "subscription_deliveries_backlog_idx" ON "subscription_deliveries"("event_created_at") WHERE status = 'pending';

-- CreateIndex
CREATE INDEX "subscription_attempts_subscription_idx" ON "subscription_attempts"("subscription_id", "id");

-- CreateIndex
CREATE INDEX "subscription_attempts_delivery_id_idx" ON "subscription_attempts"("delivery_id");

-- AddForeignKey
ALTER TABLE "subscription_deliveries" ADD CONSTRAINT "subscription_deliveries_subscription_id_fkey" FOREIGN KEY ("subscription_id") REFERENCES "subscriptions"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "subscription_attempts" ADD CONSTRAINT "subscription_attempts_subscription_id_fkey" FOREIGN KEY ("subscription_id") REFERENCES "subscriptions"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "subscription_attempts" ADD CONSTRAINT "subscription_attempts_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "subscription_deliveries"("id") ON DELETE CASCADE ON UPDATE CASCADE;
