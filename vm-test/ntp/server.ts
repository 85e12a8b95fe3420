/**
 * An SNTP test server on 127.0.0.1 (a QEMU user-network guest reaches it as 10.0.2.2), with fault
 * modes for the client tests and a scenario whose guest clock is years off:
 *   good          a stratum-2 answer with the host's time (plus `offsetMs`)
 *   wrong-origin  a good answer whose origin timestamp does not echo the request
 *   kod           a kiss-o'-death (stratum 0, reference id "RATE")
 *   silent        no answer
 *   garbage       20 random bytes
 *   unsynced      leap indicator 3, stratum 16
 *   before-build  a good answer from the year 2000
 * Run: `bun vm-test/ntp/server.ts [--port N] [--mode M]` prints `listening on 127.0.0.1:PORT`.
 */
import { createSocket } from "node:dgram";

export const NTP_MODES = [
  "good",
  "wrong-origin",
  "kod",
  "silent",
  "garbage",
  "unsynced",
  "before-build",
] as const;
export type NtpMode = (typeof NTP_MODES)[number];

const NTP_UNIX_OFFSET_SECS = 2_208_988_800;

export interface NtpTestServer {
  port: number;
  /** Requests received (any content). */
  requests: number;
  mode: NtpMode;
  stop(): Promise<void>;
}

function writeTimestamp(view: DataView, at: number, unixMs: number): void {
  const secs = Math.floor(unixMs / 1000) + NTP_UNIX_OFFSET_SECS;
  view.setUint32(at, secs >>> 0);
  view.setUint32(at + 4, Math.floor(((unixMs % 1000) / 1000) * 2 ** 32) >>> 0);
}

export function reply(request: Uint8Array, mode: NtpMode, nowMs: number): Uint8Array | undefined {
  if (mode === "silent") return undefined;
  if (mode === "garbage") return crypto.getRandomValues(new Uint8Array(20));
  const out = new Uint8Array(48);
  const view = new DataView(out.buffer);
  const leap = mode === "unsynced" ? 3 : 0;
  out[0] = (leap << 6) | (4 << 3) | 4;
  out[1] = mode === "kod" ? 0 : mode === "unsynced" ? 16 : 2;
  out[2] = 6;
  out[3] = 0xec;
  out.set(mode === "kod" ? new TextEncoder().encode("RATE") : [127, 0, 0, 1], 12);
  const t = mode === "before-build" ? Date.UTC(2000, 0, 1) : nowMs;
  writeTimestamp(view, 16, t - 60_000);
  // Origin = the client's transmit timestamp, unless this mode forges it.
  if (request.length >= 48) out.set(request.subarray(40, 48), 24);
  if (mode === "wrong-origin") out[31] = out[31]! ^ 0xff;
  writeTimestamp(view, 32, t);
  writeTimestamp(view, 40, t);
  return out;
}

export async function startNtpServer(
  opts: { port?: number; mode?: NtpMode; offsetMs?: number } = {},
): Promise<NtpTestServer> {
  const socket = createSocket("udp4");
  const server: NtpTestServer = {
    port: 0,
    requests: 0,
    mode: opts.mode ?? "good",
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  socket.on("message", (msg, rinfo) => {
    server.requests++;
    const out = reply(new Uint8Array(msg), server.mode, Date.now() + (opts.offsetMs ?? 0));
    if (out) socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  server.port = socket.address().port;
  return server;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const mode = (opt("--mode") ?? "good") as NtpMode;
  if (!NTP_MODES.includes(mode)) {
    console.error(`unknown --mode ${mode}; one of ${NTP_MODES.join(", ")}`);
    process.exit(2);
  }
  const s = await startNtpServer({ port: Number(opt("--port") ?? 0), mode });
  console.log(`listening on 127.0.0.1:${s.port} (${mode})`);
}
