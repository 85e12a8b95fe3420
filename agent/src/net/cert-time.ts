/**
 * Names the clock when TLS fails because a certificate is expired or not yet valid. The host owns
 * the guest's clock (no or wrong RTC, a restored snapshot), so "not trusted, set kbs_root_cert" is
 * the wrong advice there: the error says what the guest clock reads and which certificate is
 * valid when. The dates come from a second, unverified handshake that only feeds this message
 * (escaped; bounded by CERT_TIME_PROBE_TIMEOUT_MS) and from the configured trust anchors; nothing
 * from it is trusted or used to connect.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect, type DetailedPeerCertificate } from "node:tls";
import { printable } from "../escape.ts";

/** Longest the extra handshake that reads the peer's dates may take (it only improves a message). */
export const CERT_TIME_PROBE_TIMEOUT_MS = 5_000;

/** Deepest peer chain walked (a broker sends leaf + 1-2 intermediates). */
const MAX_CHAIN = 8;

export interface CertificateDates {
  subject: string;
  validFrom: Date;
  validTo: Date;
}

function dates(subject: string, from: string, to: string): CertificateDates | undefined {
  const validFrom = new Date(from);
  const validTo = new Date(to);
  if (Number.isNaN(validFrom.getTime()) || Number.isNaN(validTo.getTime())) return undefined;
  return { subject: printable(subject.replace(/\n/g, ", "), 120), validFrom, validTo };
}

/** The certificates the peer presents, leaf first, read without verifying them. */
function peerChain(url: URL, timeoutMs: number): Promise<CertificateDates[]> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const out: CertificateDates[] = [];
    const sock = connect({
      host,
      port: Number(url.port || 443),
      servername: isIP(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, timeoutMs);
    sock.once("error", done);
    sock.once("secureConnect", () => {
      let c: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      const seen = new Set<DetailedPeerCertificate>();
      while (c?.valid_from && !seen.has(c) && seen.size < MAX_CHAIN) {
        seen.add(c);
        const subject = Object.entries(c.subject ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(", ");
        const d = dates(subject, c.valid_from, c.valid_to);
        if (d) out.push(d);
        c = c.issuerCertificate;
      }
      done();
    });
  });
}

function anchors(ca: string | undefined): CertificateDates[] {
  const out: CertificateDates[] = [];
  for (const pem of ca?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      const x = new X509Certificate(pem);
      const d = dates(x.subject, x.validFrom, x.validTo);
      if (d) out.push(d);
    } catch {
      // An unreadable anchor fails verification on its own; it cannot be the dated one.
    }
  }
  return out;
}

/**
 * The message for a certificate-time failure at `url`: the guest's time and the first certificate
 * (peer chain, then the trust anchors in `ca`) whose validity excludes it.
 */
export async function certificateTimeMessage(
  code: string,
  url: string,
  ca: string | undefined,
  timeoutMs: number,
  now = new Date(),
): Promise<string> {
  const peer = await peerChain(new URL(url), Math.min(timeoutMs, CERT_TIME_PROBE_TIMEOUT_MS));
  const outside = [...peer, ...anchors(ca)].find((d) => now < d.validFrom || now > d.validTo);
  const iso = (d: Date) => `${d.toISOString().slice(0, 19)}Z`;
  const which = outside
    ? `the certificate ${outside.subject} is valid from ${iso(outside.validFrom)} to ${iso(outside.validTo)}`
    : "a certificate in the broker's chain is not valid at that time";
  return `TLS certificate not valid at this machine's time (${code}): the guest clock says ${iso(now)}; ${which}`;
}
