/**
 * A tiny authoritative DNS server (RFC 1035 over UDP) for VM tests: A records for the configured
 * names, NODATA for their other types, NXDOMAIN for every other name. It records each question so
 * a scenario can check that the guest really resolved a name. The guest reaches it through
 * QEMU's DNS proxy (see QemuBoot.dnsServer in qemu.ts).
 */
import { createSocket, type Socket } from "node:dgram";

export interface DnsQuestion {
  name: string;
  /** 1 = A, 28 = AAAA, ... */
  type: number;
}

export class DnsServer {
  readonly questions: DnsQuestion[] = [];

  private constructor(
    private readonly socket: Socket,
    private readonly records: Map<string, string>,
  ) {}

  /** `records`: host name -> IPv4 address. Port 53: resolv.conf and slirp's proxy know no other. */
  static async start(records: Record<string, string>, host = "127.0.0.1", port = 53): Promise<DnsServer> {
    const socket = createSocket("udp4");
    const lower = new Map(Object.entries(records).map(([n, a]) => [n.toLowerCase(), a]));
    const server = new DnsServer(socket, lower);
    socket.on("message", (msg, peer) => {
      const reply = server.answer(msg);
      if (reply) socket.send(reply, peer.port, peer.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (e) =>
        reject(new Error(`test DNS server cannot listen on ${host}:${port} (udp): ${e.message}`)),
      );
      socket.bind(port, host, () => resolve());
    });
    return server;
  }

  stop(): void {
    this.socket.close();
  }

  /** The reply to one query, or undefined for anything that is not a single-question query. */
  private answer(msg: Buffer): Buffer | undefined {
    if (msg.length < 12 || (msg[2]! & 0x80) !== 0 || msg.readUInt16BE(4) !== 1) return undefined;
    const labels: string[] = [];
    let i = 12;
    while (i < msg.length && msg[i] !== 0) {
      const len = msg[i]!;
      if (len > 63 || i + 1 + len > msg.length) return undefined;
      labels.push(msg.subarray(i + 1, i + 1 + len).toString("latin1"));
      i += 1 + len;
    }
    if (i + 5 > msg.length) return undefined;
    const questionEnd = i + 5;
    const type = msg.readUInt16BE(i + 1);
    const name = labels.join(".").toLowerCase();
    this.questions.push({ name, type });
    const address = this.records.get(name);
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2);
    // QR + AA, the client's RD; RCODE 3 (NXDOMAIN) for unknown names.
    header[2] = 0x84 | (msg[2]! & 0x01);
    header[3] = address === undefined ? 3 : 0;
    header.writeUInt16BE(1, 4);
    const answers = address !== undefined && type === 1 ? [aRecord(address)] : [];
    header.writeUInt16BE(answers.length, 6);
    return Buffer.concat([header, msg.subarray(12, questionEnd), ...answers]);
  }
}

/** An A record for the question's name (compression pointer to offset 12), TTL 60 s. */
function aRecord(address: string): Buffer {
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(1, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(60, 6);
  rr.writeUInt16BE(4, 10);
  address.split(".").forEach((octet, k) => {
    rr[12 + k] = Number(octet);
  });
  return rr;
}
