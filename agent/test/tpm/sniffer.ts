/**
 * A recording TCP proxy in front of swtpm's data and control ports (TARGET, TARGET+1), run as
 * its own process: ESAPI calls block the test's event loop, so an in-process proxy would
 * deadlock. Usage: bun sniffer.ts TARGET_PORT OUT_FILE; prints the port pair it listens on and
 * appends every byte in both directions to OUT_FILE.
 */
import { appendFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";

const [target, out] = [Number(process.argv[2]), process.argv[3]!];

function listen(port: number, to: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((client) => {
      const upstream = connect(to, "127.0.0.1");
      const pipe = (from: typeof client, into: typeof client) =>
        from.on("data", (d) => {
          appendFileSync(out, d);
          into.write(d);
        });
      pipe(client, upstream);
      pipe(upstream, client);
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        a.on("close", () => b.destroy());
        a.on("error", () => b.destroy());
      }
    });
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

for (let attempt = 0; attempt < 20; attempt++) {
  const port = 20000 + Math.floor(Math.random() * 40000);
  let data: Server | undefined;
  try {
    data = await listen(port, target);
    await listen(port + 1, target + 1);
    console.log(port);
    break;
  } catch {
    data?.close();
  }
}
