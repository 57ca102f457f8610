import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import { cancelledEvent, scheduledEvent, signedDelivery, uniqueId } from "../helpers/fixtures.js";

describe("POST /v1/webhooks/appointments", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ WEBHOOK_SECRET: "whsec_b2xkLXNlY3JldC1mb3Itcm90YXRpb24= whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" });
  });
  afterAll(async () => {
    await t.close();
  });

  const deliver = (body: unknown, options: Parameters<typeof signedDelivery>[1] = {}) => {
    const delivery = signedDelivery(body, options);
    return t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
  };

  it("stores a scheduled appointment with UTC times, its join window and a local session", async () => {
    const event = {
      type: "appointment.scheduled",
      data: {
        externalId: uniqueId(),
        revision: 3,
        startsAt: "2026-11-23T09:00:00",
        endsAt: "2026-11-23T09:30:00",
        timeZone: "America/New_York",
        agent: { id: "agent-7", name: "Dr. Lee" },
        customer: { id: "cust-42", name: "Pat Doe" },
      },
    };
    const res = await deliver(event);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.applied).toBe(true);
    expect(body.appointment).toMatchObject({
      externalId: event.data.externalId,
      status: "scheduled",
      revision: 3,
      startsAt: "2026-11-23T14:00:00.000Z",
      endsAt: "2026-11-23T14:30:00.000Z",
      timeZone: "America/New_York",
      agent: { id: "agent-7", name: "Dr. Lee" },
      customer: { id: "cust-42", name: "Pat Doe" },
      settings: { maxParticipants: 2, waitingRoom: true, recording: false },
      join: {
        agentOpensAt: "2026-11-23T13:50:00.000Z",
        customerOpensAt: "2026-11-23T13:55:00.000Z",
        closesAt: "2026-11-23T14:45:00.000Z",
      },
      session: { provider: "local", status: "ready" },
      accessBlocked: false,
    });
    expect(body.appointment.session.id).toMatch(/^ses_/);
    expect(body.appointment.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("verifies with any of several secrets (rotation) and several v1 signatures in one header", async () => {
    const event = scheduledEvent();
    const old = signedDelivery(event, { secret: "whsec_b2xkLXNlY3JldC1mb3Itcm90YXRpb24=" });
    expect((await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: old.headers, payload: old.payload })).statusCode).toBe(200);

    const twice = signedDelivery(scheduledEvent());
    const wrong = signedDelivery(JSON.parse(twice.payload), { id: twice.id, secret: "whsec_d3JvbmctLXNlY3JldA==" });
    const headers = { ...twice.headers, "webhook-signature": `${wrong.headers["webhook-signature"]} ${twice.headers["webhook-signature"]}` };
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers, payload: twice.payload });
    expect(res.statusCode).toBe(200);
  });

  it.each([
    ["no signature headers", (h: Record<string, string>) => ({ "content-type": h["content-type"] ?? "" })],
    ["a wrong signature", (h: Record<string, string>) => ({ ...h, "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" })],
    ["a malformed signature", (h: Record<string, string>) => ({ ...h, "webhook-signature": "garbage" })],
    ["a non-numeric timestamp", (h: Record<string, string>) => ({ ...h, "webhook-timestamp": "yesterday" })],
  ])("answers 401 invalid_signature for %s", async (_name, mutate) => {
    const delivery = signedDelivery(scheduledEvent());
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/webhooks/appointments",
      headers: mutate(delivery.headers),
      payload: delivery.payload,
    });
    expect(res.statusCode).toBe(401);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json().code).toBe("invalid_signature");
  });

  it("rejects a timestamp more than 5 minutes from the server clock, either way", async () => {
    for (const offset of [-6 * 60_000, 6 * 60_000]) {
      const res = await deliver(scheduledEvent(), { timestamp: new Date(Date.now() + offset) });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe("invalid_signature");
    }
    expect((await deliver(scheduledEvent(), { timestamp: new Date(Date.now() - 4 * 60_000) })).statusCode).toBe(200);
  });

  it("checks the signature before the body: unsigned junk is 401, signed junk is 400", async () => {
    const unsigned = await t.app.inject({
      method: "POST",
      url: "/v1/webhooks/appointments",
      headers: { "content-type": "application/json" },
      payload: "{not json",
    });
    expect(unsigned.statusCode).toBe(401);
    const signed = await deliver(undefined, { raw: "{not json" });
    expect(signed.statusCode).toBe(400);
    expect(signed.json().code).toBe("invalid_request");
  });

  it("tampering with a signed body breaks the signature", async () => {
    const delivery = signedDelivery(scheduledEvent());
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/webhooks/appointments",
      headers: delivery.headers,
      payload: delivery.payload.replace("Dr. Lee", "Dr. Evil"),
    });
    expect(res.statusCode).toBe(401);
  });

  it.each([
    ["a string revision", { revision: "3" }, "/data/revision"],
    ["a numeric externalId", { externalId: 42 }, "/data/externalId"],
    ["an empty externalId", { externalId: "" }, "/data/externalId"],
    ["a 201-character externalId", { externalId: "x".repeat(201) }, "/data/externalId"],
    ["a control character in the externalId", { externalId: "a\u0007b" }, "/data/externalId"],
    ["maxParticipants 0", { settings: { maxParticipants: 0 } }, "/data/settings/maxParticipants"],
    ["maxParticipants 101", { settings: { maxParticipants: 101 } }, "/data/settings/maxParticipants"],
    ["a string waitingRoom", { settings: { waitingRoom: "yes" } }, "/data/settings/waitingRoom"],
    ["a 201-character name", { agent: { id: "a", name: "n".repeat(201) } }, "/data/agent/name"],
    ["a missing startsAt", { startsAt: undefined }, "/data/startsAt"],
    ["a missing customer", { customer: undefined }, "/data/customer"],
    ["an impossible date", { startsAt: "2027-02-30T10:00:00Z" }, "/data/startsAt"],
    ["a malformed time", { endsAt: "next tuesday" }, "/data/endsAt"],
  ])("answers 400 invalid_request for %s, with the path", async (_name, change, path) => {
    const event = scheduledEvent();
    const res = await deliver({ ...event, data: { ...event.data, ...change } });
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.code).toBe("invalid_request");
    expect(body.errors.map((e: { path: string }) => e.path)).toContain(path);
  });

  it("answers 400 for an unknown event type and ignores unknown top-level fields", async () => {
    const bad = await deliver({ type: "appointment.exploded", data: { externalId: uniqueId() } });
    expect(bad.statusCode).toBe(400);
    const extra = await deliver({ ...scheduledEvent(), extra: { anything: true } });
    expect(extra.statusCode).toBe(200);
  });

  it.each([
    ["missing_time_zone", { startsAt: "2026-12-01T09:00:00", endsAt: "2026-12-01T09:30:00", timeZone: null }],
    ["invalid_time_zone", { startsAt: "2026-12-01T09:00:00", endsAt: "2026-12-01T09:30:00", timeZone: "Mars/Olympus" }],
    ["nonexistent_local_time", { startsAt: "2027-03-14T02:30:00", endsAt: "2027-03-14T03:30:00", timeZone: "America/New_York" }],
    ["invalid_time_range", { startsAt: "2026-12-01T10:00:00Z", endsAt: "2026-12-01T09:00:00Z" }],
    ["invalid_time_range", { startsAt: "2026-12-01T10:00:00Z", endsAt: "2026-12-02T10:00:01Z" }],
  ])("answers 422 %s", async (code, times) => {
    const event = scheduledEvent();
    const res = await deliver({ ...event, data: { ...event.data, ...times } });
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe(code);
  });

  it("resolves an ambiguous fall-back time to the earlier instant", async () => {
    const event = scheduledEvent();
    const res = await deliver({
      ...event,
      data: { ...event.data, startsAt: "2026-11-01T01:30:00", endsAt: "2026-11-01T02:30:00", timeZone: "America/New_York" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().appointment.startsAt).toBe("2026-11-01T05:30:00.000Z");
    expect(res.json().appointment.endsAt).toBe("2026-11-01T07:30:00.000Z");
  });

  it("answers a redelivery with the first result and no second effect", async () => {
    const delivery = signedDelivery(scheduledEvent());
    const send = () =>
      t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    const first = await send();
    const second = await send();
    expect(second.statusCode).toBe(first.statusCode);
    expect(second.json()).toEqual(first.json());
    const externalId = first.json().appointment.externalId;
    const events = await t.db.prisma.auditEvent.count({ where: { externalId, type: "webhook.applied" } });
    expect(events).toBe(1);
  });

  it("orders events by revision: older or equal revisions are acknowledged and change nothing", async () => {
    const event = scheduledEvent({ revision: 5 });
    const externalId = event.data.externalId;
    expect((await deliver(event)).statusCode).toBe(200);
    const older = scheduledEvent({ externalId, revision: 4, startsInMinutes: 60 });
    const res = await deliver(older);
    expect(res.statusCode).toBe(200);
    expect(res.json().applied).toBe(false);
    expect(res.json().appointment.startsAt).toBe(new Date(event.data.startsAt).toISOString());
    expect(res.json().appointment.revision).toBe(5);

    const same = await deliver(scheduledEvent({ externalId, revision: 5, startsInMinutes: 90 }));
    expect(same.json().applied).toBe(false);

    const unrevisioned = await deliver(scheduledEvent({ externalId, startsInMinutes: 120 }));
    expect(unrevisioned.json().applied).toBe(true);
    expect(unrevisioned.json().appointment.revision).toBe(5);
  });

  it("keeps the session across a reschedule", async () => {
    const event = scheduledEvent();
    const first = (await deliver(event)).json();
    const moved = (await deliver(scheduledEvent({ externalId: event.data.externalId, startsInMinutes: 45 }))).json();
    expect(moved.applied).toBe(true);
    expect(moved.appointment.session.id).toBe(first.appointment.session.id);
    expect(moved.appointment.startsAt).not.toBe(first.appointment.startsAt);
  });

  it("cancels; cancelling an unknown id leaves a tombstone that stops an older scheduled event", async () => {
    const event = scheduledEvent();
    const externalId = event.data.externalId;
    await deliver(event);
    const cancelled = await deliver(cancelledEvent(externalId));
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ applied: true, appointment: { status: "cancelled" } });

    const ghost = uniqueId();
    const tombstone = await deliver(cancelledEvent(ghost, 7));
    expect(tombstone.statusCode).toBe(200);
    expect(tombstone.json()).toEqual({ applied: false });

    const late = await deliver(scheduledEvent({ externalId: ghost, revision: 6 }));
    expect(late.statusCode).toBe(200);
    expect(late.json()).toEqual({ applied: false });

    const rebooked = await deliver(scheduledEvent({ externalId: ghost, revision: 8 }));
    expect(rebooked.json()).toMatchObject({ applied: true, appointment: { status: "scheduled", revision: 8 } });
  });

  it("rebooks a cancelled appointment with a newer event", async () => {
    const event = scheduledEvent({ revision: 1 });
    const externalId = event.data.externalId;
    await deliver(event);
    await deliver(cancelledEvent(externalId, 2));
    const stale = await deliver(scheduledEvent({ externalId, revision: 2 }));
    expect(stale.json()).toMatchObject({ applied: false, appointment: { status: "cancelled" } });
    const rebooked = await deliver(scheduledEvent({ externalId, revision: 3 }));
    expect(rebooked.json()).toMatchObject({ applied: true, appointment: { status: "scheduled", revision: 3 } });
  });

  it("answers 415 for a body that is not JSON and 413 over 64 KiB", async () => {
    const delivery = signedDelivery(scheduledEvent());
    const form = await t.app.inject({
      method: "POST",
      url: "/v1/webhooks/appointments",
      headers: { ...delivery.headers, "content-type": "application/x-www-form-urlencoded" },
      payload: "a=b",
    });
    expect(form.statusCode).toBe(415);
    expect(form.json().code).toBe("unsupported_media_type");
    const event = scheduledEvent();
    const huge = signedDelivery({ ...event, padding: "x".repeat(70 * 1024) });
    const big = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: huge.headers, payload: huge.payload });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe("payload_too_large");
  });
});
