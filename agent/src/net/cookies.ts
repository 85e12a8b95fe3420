/**
 * A small cookie jar (the RFC 6265 storage and sending rules a key-broker session needs): every
 * cookie a broker or a load balancer in front of it sets is kept and sent back, so a trustee
 * session survives affinity cookies of several replicas. Host-only and Domain cookies, Path,
 * Expires/Max-Age and Secure are honoured; SameSite and HttpOnly do not apply to a non-browser
 * client. There is no public-suffix list: a jar lives for one key fetch and only ever talks to the
 * broker URLs the configuration names, so a too-wide Domain cannot leak a cookie elsewhere.
 * Set-Cookie headers come from the network (attacker-controlled): the jar is bounded.
 */
import { printable } from "../escape.ts";
import { log } from "../log.ts";

/** Cookies one jar keeps; further new ones are dropped (a broker session needs 1-3). */
export const COOKIE_JAR_MAX_COOKIES = 32;
/** Largest name=value accepted (RFC 6265 §6.1: clients should support at least 4096 bytes). */
export const COOKIE_MAX_BYTES = 4096;

interface Cookie {
  name: string;
  value: string;
  /** Lower-case host (host-only) or Domain attribute without the leading dot. */
  domain: string;
  hostOnly: boolean;
  path: string;
  secure: boolean;
  /** ms since epoch; Infinity for a session cookie. */
  expires: number;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** RFC 6265 §5.1.3: the host is the domain or a subdomain of it; IP addresses only match themselves. */
function domainMatch(host: string, domain: string): boolean {
  if (host === domain) return true;
  return !isIp(host) && host.endsWith(`.${domain}`);
}

/** RFC 6265 §5.1.4: the directory of the request path. */
function defaultPath(pathname: string): string {
  const slash = pathname.lastIndexOf("/");
  return slash <= 0 ? "/" : pathname.slice(0, slash);
}

/** RFC 6265 §5.1.4 path-match. */
function pathMatch(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/";
}

function hostOf(url: URL): string {
  // URL keeps IPv6 hosts in brackets.
  return url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
}

export class CookieJar {
  private cookies: Cookie[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** Store the Set-Cookie lines of a reply to `requestUrl`; malformed or refused ones are skipped. */
  store(requestUrl: string, setCookies: readonly string[]): void {
    const url = new URL(requestUrl);
    const ignored: string[] = [];
    for (const line of setCookies) {
      const why = this.storeOne(url, line);
      if (why) ignored.push(why);
    }
    // One line per reply: a flood of bad cookies must not flood the log.
    if (ignored.length) {
      const more = ignored.length > 1 ? ` (and ${ignored.length - 1} more)` : "";
      log.warn(`cookie from ${url.origin} ignored: ${ignored[0]}${more}`);
    }
  }

  private storeOne(url: URL, line: string): string | undefined {
    const [pair = "", ...attrs] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq < 1) return "no name=value";
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!name) return "no name=value";
    if (name.length + value.length > COOKIE_MAX_BYTES) {
      return `${printable(name, 40)} is larger than ${COOKIE_MAX_BYTES} bytes`;
    }
    const host = hostOf(url);
    const now = this.now();
    const c: Cookie = {
      name,
      value,
      domain: host,
      hostOnly: true,
      path: defaultPath(url.pathname),
      secure: false,
      expires: Number.POSITIVE_INFINITY,
    };
    let maxAge: number | undefined;
    for (const attr of attrs) {
      const i = attr.indexOf("=");
      const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const v = i < 0 ? "" : attr.slice(i + 1).trim();
      if (key === "expires") {
        const t = Date.parse(v);
        if (!Number.isNaN(t)) c.expires = t;
      } else if (key === "max-age") {
        // §5.2.2: an integer; zero or negative expires the cookie now. Max-Age wins over Expires.
        if (/^-?\d+$/.test(v)) maxAge = Number(v);
      } else if (key === "domain" && v) {
        const d = v.replace(/^\./, "").toLowerCase();
        if (!domainMatch(host, d))
          return `${printable(name, 40)} names Domain=${printable(v, 80)}, not ${host}`;
        c.domain = d;
        c.hostOnly = false;
      } else if (key === "path") {
        c.path = v.startsWith("/") ? v : defaultPath(url.pathname);
      } else if (key === "secure") {
        c.secure = true;
      }
    }
    if (maxAge !== undefined) c.expires = maxAge <= 0 ? 0 : now + maxAge * 1000;
    // RFC 6265bis: a plain-HTTP reply may not set a Secure cookie.
    if (c.secure && url.protocol !== "https:") return `${printable(name, 40)} is Secure but came over http`;
    const same = (o: Cookie) => o.name === c.name && o.domain === c.domain && o.path === c.path;
    const old = this.cookies.findIndex(same);
    if (old >= 0) this.cookies.splice(old, 1);
    if (c.expires <= now) return undefined; // a deletion
    if (this.cookies.length >= COOKIE_JAR_MAX_COOKIES) {
      return `${printable(name, 40)}: the jar already holds ${COOKIE_JAR_MAX_COOKIES} cookies`;
    }
    this.cookies.push(c);
    return undefined;
  }

  private matching(requestUrl: string): Cookie[] {
    const url = new URL(requestUrl);
    const host = hostOf(url);
    const now = this.now();
    this.cookies = this.cookies.filter((c) => c.expires > now);
    return this.cookies
      .filter(
        (c) =>
          (c.hostOnly ? host === c.domain : domainMatch(host, c.domain)) &&
          pathMatch(url.pathname, c.path) &&
          (!c.secure || url.protocol === "https:"),
      )
      .sort((a, b) => b.path.length - a.path.length); // §5.4: longer paths first; stable otherwise
  }

  /** The Cookie header for a request to `requestUrl`, or undefined when no cookie applies. */
  header(requestUrl: string): string | undefined {
    const list = this.matching(requestUrl);
    return list.length ? list.map((c) => `${c.name}=${c.value}`).join("; ") : undefined;
  }

  /** Expiry (ms since epoch) of the live cookie `name` sent to `requestUrl`, if there is one. */
  expiry(requestUrl: string, name: string): number | undefined {
    return this.matching(requestUrl).find((c) => c.name === name)?.expires;
  }
}
