import net from "node:net";

/**
 * A TCP proxy on loopback in front of Postgres, so a test can take the
 * database away without touching the real server: `refuse()` drops every
 * connection and refuses new ones (database down, or `pg_ctl stop -m
 * immediate`), `stall()` drops every connection and accepts new ones without
 * ever answering (a hung database), `blackhole()` keeps every connection open
 * but stops forwarding in both directions (a network partition: statements in
 * flight and new ones never get an answer), `restore()` forwards again.
 */
export interface TcpProxy {
  port: number;
  /** The target URL rewritten to go through the proxy. */
  urlFor(target: string): string;
  refuse(): void;
  stall(): void;
  blackhole(): void;
  restore(): void;
  /** Connections currently open through the proxy. */
  openConnections(): number;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | null;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let mode: "forward" | "refuse" | "stall" | "blackhole" = "forward";
  const pairs = new Set<Pair>();
  const dropAll = () => {
    for (const pair of pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
  };
  const forward = (pair: Pair) => {
    pair.upstream ??= connectUpstream(pair);
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  };
  const connectUpstream = (pair: Pair) => {
    const upstream = net.connect(targetPort, targetHost);
    upstream.on("error", () => pair.client.destroy());
    upstream.on("close", () => pair.client.destroy());
    return upstream;
  };

  const server = net.createServer((client) => {
    const pair: Pair = { client, upstream: null };
    pairs.add(pair);
    client.on("error", () => client.destroy());
    client.on("close", () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    if (mode === "refuse") return void client.destroy();
    if (mode === "forward") forward(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    urlFor(target) {
      const url = new URL(target);
      url.hostname = "127.0.0.1";
      url.port = String(port);
      return url.toString();
    },
    refuse() {
      mode = "refuse";
      dropAll();
    },
    stall() {
      mode = "stall";
      dropAll();
    },
    blackhole() {
      mode = "blackhole";
      // Unpiped streams stop flowing: whatever either side sends waits in the proxy, unanswered.
      for (const { client, upstream } of pairs) {
        if (!upstream) continue;
        client.unpipe(upstream);
        upstream.unpipe(client);
      }
    },
    restore() {
      const wasBlackholed = mode === "blackhole";
      mode = "forward";
      for (const pair of pairs) {
        // Connections accepted while stalled never reached the database: their clients gave up on them.
        if (!pair.upstream) pair.client.destroy();
        else if (wasBlackholed) forward(pair);
      }
    },
    openConnections: () => pairs.size,
    async close() {
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
