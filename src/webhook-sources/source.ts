import type { Static, TSchema } from "typebox";
import type { AppointmentEvent } from "../domain/appointment-event.js";

/** An inbound request as a source sees it: the bytes as received, and the headers. */
export interface InboundRequest {
  rawBody: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One scheduler's webhook format (API.md §1, and §11's native ones): how its
 * sender is verified, what makes a redelivery recognisable, and how its body
 * becomes the one domain event the lifecycle rules consume. A new source is
 * one file implementing this, plus its route.
 */
export interface WebhookSource<Schema extends TSchema> {
  /** The format an appointment records as its `source`. */
  readonly name: string;
  /** What the verified body must look like; the route validates it (400 invalid_request). */
  readonly bodySchema: Schema;
  /**
   * Checks the sender over the raw body before anything parses it (401
   * invalid_signature). Returns the parsed body and the delivery's id, the
   * same for every delivery of one event and only for it.
   */
  verify(request: InboundRequest): { body: unknown; deliveryId: string };
  /** The validated body as the domain event (400 or 422 for what the schema cannot say). */
  toEvent(body: Static<Schema>): AppointmentEvent;
}
