/** A TCP port on 127.0.0.1 that is free now, for a test server the guest reaches as 10.0.2.2:PORT. */
export async function freePort(): Promise<number> {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}
