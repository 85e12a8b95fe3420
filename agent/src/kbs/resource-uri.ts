/**
 * KBS resource locations: upstream's `key_uri = "kbs:///repo/type/tag"` (a host in the URI is
 * ignored, as confidential-data-hub does) or the documented `resource_path = "repo/type/tag"`
 * (a two-segment `type/tag` means repository "default").
 */
import { ConfigError } from "../errors.ts";

/** trustee's ResourceDesc rule for each of the three segments. */
const SEGMENT = /^[A-Za-z0-9_-]+[A-Za-z0-9_.-]*$/;

export function parseResourcePath(input: string, field = "resource_path"): string {
  let path = input.trim();
  if (path.startsWith("kbs://")) {
    const rest = path.slice("kbs://".length);
    const slash = rest.indexOf("/");
    if (slash < 0)
      throw new ConfigError(`kbs provider: ${field} "${input}" has no resource path after the host`);
    path = rest.slice(slash + 1);
  } else if (/^[a-z+]+:\/\//.test(path)) {
    throw new ConfigError(
      `kbs provider: ${field} "${input}" must start with kbs:// (only the resource plugin is supported)`,
    );
  }
  if (path.includes("?"))
    throw new ConfigError(`kbs provider: ${field} "${input}": query parameters are not supported`);
  const segments = path.replace(/^\/+/, "").split("/");
  if (segments.length === 2) segments.unshift("default");
  if (segments.length !== 3 || !segments.every((s) => SEGMENT.test(s))) {
    throw new ConfigError(
      `kbs provider: ${field} "${input}" is not a resource path: expected <repository>/<type>/<tag> (or kbs:///<repository>/<type>/<tag>), each segment letters, digits, "_", "-", "."`,
    );
  }
  return segments.join("/");
}
