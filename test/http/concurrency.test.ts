import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, scheduledEvent, signedDelivery, uniqueId, userJwt } from "../helpers/fixtures.js";

/**
 * The concurrency guarantees, over real HTTP against two listening replicas
 * that share one Postgres database, each with the production pool size: if
 * exactly-once relied on process memory, these would fail.
 */
describe("two replicas under concurrent requests", () => {
  let replicas: TestApp[];
  beforeAll(async () => {
    replicas = await Promise.all([startApp(), startApp()]);
    await Promise.all(replicas.map((r) => r.listen()));
    expect(replicas[0]?.config.databasePoolSize).toBe(10);
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
  });

  const urlOf = (i: number) => replicas[i % replicas.length]?.url ?? "";
  const prisma = () => {
    if (!replicas[0]) throw new Error("replicas not started");
    return replicas[0].db.prisma;
  };

  async function post(i: number, path: string, body: string | object, headers: Record<string, string>) {
    const res = await fetch(`${urlOf(i)}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function schedule(options: Parameters<typeof scheduledEvent>[0] = {}) {
    const event = scheduledEvent(options);
    const delivery = signedDelivery(event);
    const res = await post(0, "/v1/webhooks/appointments", delivery.payload, delivery.headers);
    expect(res.status).toBe(200);
    return event.data;
  }

  it("ten simultaneous deliveries of one webhook-id have one effect and one answer", async () => {
    const event = scheduledEvent();
    const delivery = signedDelivery(event);
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => post(i, "/v1/webhooks/appointments", delivery.payload, delivery.headers)),
    );
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([200]));
    expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
    const externalId = event.data.externalId;
    expect(await prisma().appointment.count({ where: { externalId } })).toBe(1);
    expect(await prisma().auditEvent.count({ where: { externalId, type: "webhook.applied" } })).toBe(1);
    expect(await prisma().auditEvent.count({ where: { externalId, type: "session.created" } })).toBe(1);
  });

  it("different deliveries for one new appointment create it once", async () => {
    const event = scheduledEvent();
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => {
        const delivery = signedDelivery(event);
        return post(i, "/v1/webhooks/appointments", delivery.payload, delivery.headers);
      }),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const sessions = new Set(answers.map((a) => (a.body.appointment as { session: { id: string } }).session.id));
    expect(sessions.size).toBe(1);
    expect(await prisma().auditEvent.count({ where: { externalId: event.data.externalId, type: "session.created" } })).toBe(1);
  });

  it("twenty simultaneous join requests by one user leave exactly one live token", async () => {
    const a = await schedule();
    const jwt = bearer(userJwt(a.customer.id));
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(i, `/v1/appointments/${a.externalId}/join-token`, {}, jwt)),
    );
    expect(answers.map((x) => x.status)).toEqual(Array(20).fill(201));
    const live = await prisma().joinToken.count({ where: { userId: a.customer.id, revokedAt: null } });
    expect(live).toBe(1);
    const replaced = await prisma().joinToken.count({ where: { userId: a.customer.id, revocationReason: "replaced" } });
    expect(replaced).toBe(19);
  });

  it("never lets more participants hold live tokens than maxParticipants", async () => {
    const a = await schedule({ settings: { maxParticipants: 1 } });
    const agent = bearer(userJwt(a.agent.id));
    const customer = bearer(userJwt(a.customer.id));
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        post(i, `/v1/appointments/${a.externalId}/join-token`, {}, i % 2 === 0 ? agent : customer),
      ),
    );
    expect(answers.every((x) => x.status === 201 || (x.status === 409 && x.body.code === "participant_limit"))).toBe(true);
    const holders = await prisma().joinToken.findMany({
      where: { appointment: { externalId: a.externalId }, revokedAt: null },
      distinct: ["userId"],
      select: { userId: true },
    });
    expect(holders).toHaveLength(1);
  });

  it("one user joining two appointments at once ends up live in at most one", async () => {
    const customerId = uniqueId("cust");
    const [a, b] = [await schedule({ customerId }), await schedule({ customerId })];
    const jwt = bearer(userJwt(customerId));
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => post(i, `/v1/appointments/${(i % 2 === 0 ? a : b).externalId}/join-token`, {}, jwt)),
    );
    expect(answers.every((x) => x.status === 201 || (x.status === 409 && x.body.code === "active_elsewhere"))).toBe(true);
    const live = await prisma().joinToken.findMany({
      where: { userId: customerId, revokedAt: null },
      distinct: ["appointmentId"],
      select: { appointmentId: true },
    });
    expect(live).toHaveLength(1);
  });
});

describe("revocation racing a join", () => {
  let replicas: TestApp[];
  beforeAll(async () => {
    replicas = await Promise.all([startApp(), startApp()]);
    await Promise.all(replicas.map((r) => r.listen()));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
  });

  it("a cancellation or a block never leaves a token issued at the same moment alive", async () => {
    const [a, b] = replicas as [TestApp, TestApp];
    const operator = `Bearer ${userJwt("ops-1", { scope: OPERATOR_SCOPES })}`;
    for (let i = 0; i < 12; i++) {
      const event = scheduledEvent();
      const externalId = event.data.externalId;
      const first = signedDelivery(event);
      await fetch(`${a.url}/v1/webhooks/appointments`, { method: "POST", headers: first.headers, body: first.payload });
      const joins = [event.data.agent.id, event.data.customer.id].map((user, n) =>
        fetch(`${(n === 0 ? a : b).url}/v1/appointments/${externalId}/join-token`, {
          method: "POST",
          headers: { authorization: `Bearer ${userJwt(user)}` },
        }),
      );
      const cancel =
        i % 2 === 0
          ? (() => {
              const delivery = signedDelivery({ type: "appointment.cancelled", data: { externalId } });
              return fetch(`${b.url}/v1/webhooks/appointments`, { method: "POST", headers: delivery.headers, body: delivery.payload });
            })()
          : fetch(`${a.url}/v1/appointments/${externalId}/revoke`, {
              method: "POST",
              headers: { authorization: operator, "content-type": "application/json" },
              body: JSON.stringify({ block: true }),
            });
      await Promise.all([...joins, cancel]);
      const live = await a.db.prisma.joinToken.count({ where: { appointment: { externalId }, revokedAt: null } });
      expect(live, `round ${i}`).toBe(0);
    }
  });
});
