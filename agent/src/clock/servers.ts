/**
 * NTP server names as global.toml (`[boot] ntp_servers`) and the kernel command line
 * (`cryptpilot.ntp=host1,host2`) give them: `host`, `host:port`, an IPv4 address, or an IPv6
 * address (bare, or `[addr]:port`). Kept free of other imports: the config schema uses it too.
 */

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * 4 or 6 for an IP address literal, else 0 (as node:net's isIP, which is not imported: node:net
 * would load with the config schema at every start-up). IPv6 is checked by the URL parser.
 */
export function isIP(text: string): 0 | 4 | 6 {
  if (IPV4.test(text)) return 4;
  if (!text.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(text)) return 0;
  try {
    new URL(`http://[${text}]/`);
    return 6;
  } catch {
    return 0;
  }
}

/** The SNTP port (RFC 4330). */
export const NTP_PORT = 123;

/** At most this many servers are taken from the config and the command line together. */
export const MAX_NTP_SERVERS = 8;

/** The kernel argument that names NTP servers, comma separated. */
export const NTP_CMDLINE_ARG = "cryptpilot.ntp";

export interface NtpServer {
  host: string;
  port: number;
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function validPort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** The server a spec names, or undefined when it is not a host name or address (with a port). */
export function parseNtpServer(spec: string): NtpServer | undefined {
  if (isIP(spec) === 6) return { host: spec, port: NTP_PORT };
  const bracketed = /^\[([^\]]+)\](?::([^:]*))?$/.exec(spec);
  if (bracketed) {
    const port = bracketed[2] === undefined ? NTP_PORT : validPort(bracketed[2]);
    return isIP(bracketed[1]!) === 6 && port !== undefined ? { host: bracketed[1]!, port } : undefined;
  }
  const colon = spec.lastIndexOf(":");
  const host = colon < 0 ? spec : spec.slice(0, colon);
  const port = colon < 0 ? NTP_PORT : validPort(spec.slice(colon + 1));
  if (port === undefined || !(isIP(host) === 4 || HOST_NAME.test(host))) return undefined;
  return { host, port };
}

export const NTP_SERVER_FORMAT = "a host name or IP address, optionally with :port ([addr]:port for IPv6)";

/** The specs of `cryptpilot.ntp=` in a kernel command line (the last one counts, as for the kernel). */
export function ntpServersFromCmdline(cmdline: string): string[] {
  let value: string | undefined;
  for (const word of cmdline.trim().split(/\s+/)) {
    if (word.startsWith(`${NTP_CMDLINE_ARG}=`)) value = word.slice(NTP_CMDLINE_ARG.length + 1);
  }
  return value === undefined ? [] : value.split(",").filter((s) => s !== "");
}

export const describeServer = (s: NtpServer): string =>
  s.port === NTP_PORT ? s.host : isIP(s.host) === 6 ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
