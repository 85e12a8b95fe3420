/**
 * RFC 8785 (JCS) canonical JSON for the runtime data the KBS re-hashes. Object keys are sorted by
 * UTF-16 code units (JavaScript's default string order) and strings/numbers are serialised the
 * ECMAScript way, which is exactly what JCS prescribes.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
}
