/**
 * A small SNTP client (RFC 4330 / RFC 5905 client mode): one 48-byte request, one checked reply.
 *
 * The request's transmit timestamp is a random nonce, not our (possibly years-off) clock: the
 * server echoes it as the origin timestamp, which is how a reply is matched to this request (an
 * off-path forger has to guess 64 bits; the host, on the path, can answer anything it likes, so
 * the clock is never trusted beyond making TLS validity checks work).
 */
import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { printable } from "../escape.ts";
import { describeServer, isIP, type NtpServer } from "./servers.ts";

export const NTP_PACKET_BYTES = 48;
/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET_SECS = 2_208_988_800;
const MODE_CLIENT = 3;
const MODE_SERVER = 4;
const VERSION = 4;
const LEAP_UNSYNCHRONISED = 3;
/** Stratum 16 and above: the server is not synchronised (RFC 5905 §7.3). */
const STRATUM_UNSYNCHRONISED = 16;

/** What a good reply says: the server's time (Unix ms) at the moment the reply arrived. */
export interface SntpTime {
  server: string;
  /** Server's Unix time in ms at `receivedAt`, corrected by half the network delay. */
  unixMs: number;
  /** performance.now() when the reply arrived. */
  receivedAt: number;
  roundTripMs: number;
  stratum: number;
}

export class SntpError extends Error {}

export function buildRequest(nonce: Uint8Array): Uint8Array {
  const packet = new Uint8Array(NTP_PACKET_BYTES);
  packet[0] = (VERSION << 3) | MODE_CLIENT;
  packet.set(nonce.subarray(0, 8), 40);
  return packet;
}

/** An NTP timestamp as Unix ms; era 1 (from 2036-02-07) when the top bit of the seconds is clear. */
export function ntpToUnixMs(view: DataView, offset: number): number {
  const secs = view.getUint32(offset);
  const frac = view.getUint32(offset + 4);
  const era = secs & 0x8000_0000 ? 0 : 2 ** 32;
  return (secs + era - NTP_UNIX_OFFSET_SECS) * 1000 + (frac / 2 ** 32) * 1000;
}

const isZero = (b: Uint8Array) => b.every((x) => x === 0);

/**
 * Checks a reply against the request's nonce and turns it into a time; throws SntpError naming
 * the field that is wrong. `sentAt`/`receivedAt` are performance.now() values.
 */
export function parseReply(
  reply: Uint8Array,
  nonce: Uint8Array,
  sentAt: number,
  receivedAt: number,
  server: string,
): SntpTime {
  if (reply.length < NTP_PACKET_BYTES) {
    throw new SntpError(`a ${reply.length}-byte reply, not an NTP packet (${NTP_PACKET_BYTES} bytes)`);
  }
  const view = new DataView(reply.buffer, reply.byteOffset, reply.byteLength);
  const leap = reply[0]! >> 6;
  const version = (reply[0]! >> 3) & 7;
  const mode = reply[0]! & 7;
  const stratum = reply[1]!;
  if (mode !== MODE_SERVER) throw new SntpError(`mode ${mode} in the reply, not server (${MODE_SERVER})`);
  if (version < 3 || version > 4) throw new SntpError(`NTP version ${version} in the reply, not 3 or 4`);
  if (stratum === 0) {
    // Kiss-o'-death: the reference id carries a 4-letter code such as RATE or DENY.
    const code = printable(new TextDecoder("latin1").decode(reply.subarray(12, 16)));
    throw new SntpError(`kiss-o'-death ${code} (stratum 0): the server refuses to give the time`);
  }
  if (stratum >= STRATUM_UNSYNCHRONISED)
    throw new SntpError(`stratum ${stratum}: the server is not synchronised`);
  if (leap === LEAP_UNSYNCHRONISED)
    throw new SntpError("leap indicator 3: the server's clock is not synchronised");
  if (!reply.subarray(24, 32).every((b, i) => b === nonce[i])) {
    throw new SntpError("the origin timestamp does not echo this request (a stale or forged reply)");
  }
  if (isZero(reply.subarray(40, 48))) throw new SntpError("a zero transmit timestamp");
  if (isZero(reply.subarray(32, 40))) throw new SntpError("a zero receive timestamp");
  const t2 = ntpToUnixMs(view, 32);
  const t3 = ntpToUnixMs(view, 40);
  const roundTripMs = Math.max(0, receivedAt - sentAt);
  const held = t3 - t2;
  if (held < 0 || held > roundTripMs + 1) {
    throw new SntpError(
      `the server held the request ${held.toFixed(1)} ms, outside the ${roundTripMs.toFixed(1)} ms round trip`,
    );
  }
  return { server, unixMs: t3 + (roundTripMs - held) / 2, receivedAt, roundTripMs, stratum };
}

/** Rejects with SntpError(`message`) after `ms`. */
async function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SntpError(message)), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asks one server, within `timeoutMs` for the name lookup and the reply together. Replies from
 * other addresses are ignored; one whose origin does not echo the nonce is dropped (it may be a
 * late answer to an earlier request) and named if nothing better arrives; any other bad reply
 * from the server ends the query.
 */
export async function querySntp(server: NtpServer, timeoutMs: number): Promise<SntpTime> {
  const name = describeServer(server);
  const started = performance.now();
  const address = isIP(server.host)
    ? server.host
    : (await withDeadline(lookup(server.host), timeoutMs, `${name}: no address within ${timeoutMs} ms`))
        .address;
  const left = Math.max(1, timeoutMs - (performance.now() - started));
  const nonce = crypto.getRandomValues(new Uint8Array(8));
  const socket = createSocket(isIP(address) === 6 ? "udp6" : "udp4");
  let dropped: string | undefined;
  try {
    return await withDeadline(
      new Promise<SntpTime>((resolve, reject) => {
        let sentAt = 0;
        socket.on("error", (e) => reject(new SntpError(`${name}: ${e.message}`)));
        socket.on("message", (msg, rinfo) => {
          if (rinfo.address !== address || rinfo.port !== server.port) return;
          try {
            resolve(parseReply(new Uint8Array(msg), nonce, sentAt, performance.now(), name));
          } catch (e) {
            if (e instanceof SntpError && e.message.startsWith("the origin timestamp")) dropped = e.message;
            else reject(e instanceof SntpError ? new SntpError(`${name}: ${e.message}`) : e);
          }
        });
        sentAt = performance.now();
        socket.send(buildRequest(nonce), server.port, address, (e) => {
          if (e) reject(new SntpError(`${name}: cannot send: ${e.message}`));
        });
      }),
      left,
      `${name}: no answer within ${timeoutMs} ms`,
    );
  } catch (e) {
    if (dropped && e instanceof SntpError && e.message.includes("no answer")) {
      throw new SntpError(`${name}: ${dropped}`);
    }
    throw e;
  } finally {
    closeQuietly(socket);
  }
}

function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
