import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createWebhookSender } from "../../src/services/webhook-sender.js";

/**
 * A receiver on raw TCP, so a test decides what happens to each connection:
 * it answers the first request of every connection (keep-alive), and drops
 * the connection when a second request arrives on it, as a server does that
 * closes an idle kept-alive connection just as the client reuses it.
 */
async function startDroppingReceiver(): Promise<{ url: string; connections: () => number; requests: () => number; close(): Promise<void> }> {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    let served = 0;
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1");
      while (buffered.includes("\r\n\r\n")) {
        const end = buffered.indexOf("\r\n\r\n") + 4;
        const length = Number(/content-length: (\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + length) return;
        buffered = buffered.slice(end + length);
        requests++;
        if (served++ > 0) {
          socket.resetAndDestroy();
          return;
        }
        socket.write("HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n");
      }
    });
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hook`,
    connections: () => connections,
    requests: () => requests,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("the webhook sender (API.md §9 deliveries)", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it("sends once more, at once, a request whose reused kept-alive connection was reset, and counts one attempt", async () => {
    const receiver = await startDroppingReceiver();
    cleanups.push(() => receiver.close());
    const sender = createWebhookSender({ timeoutMs: 2_000, allowPrivateTargets: true });
    cleanups.push(() => sender.close());
    const send = () => sender.send({ url: receiver.url, body: "{}", headers: {} });

    expect(await send()).toMatchObject({ outcome: 204, error: null });
    // The drained answer hands its connection back to the agent's pool on a later tick.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The second request goes out on the kept-alive connection, which the receiver resets.
    expect(await send()).toMatchObject({ outcome: 204, error: null });
    expect(receiver.requests()).toBe(3);
    expect(receiver.connections()).toBe(2);
  });

  it("does not send again a request reset on a fresh connection: that is the receiver's answer", async () => {
    const server = createServer((socket) => socket.on("data", () => socket.resetAndDestroy()));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    let connections = 0;
    server.on("connection", () => connections++);
    const sender = createWebhookSender({ timeoutMs: 2_000, allowPrivateTargets: true });
    cleanups.push(() => sender.close());
    const { port } = server.address() as { port: number };

    const result = await sender.send({ url: `http://127.0.0.1:${port}/hook`, body: "{}", headers: {} });
    expect(result).toMatchObject({ outcome: "network", error: "network error (ECONNRESET)" });
    expect(connections).toBe(1);
  });
});
