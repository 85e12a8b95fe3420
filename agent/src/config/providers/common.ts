/**
 * What the provider table schemas (one file per provider next to this one) share: field types,
 * the path helper for issues raised in a rawTransform, and the TOML output helper.
 */
import * as v from "valibot";

/** A provider table as TOML data (`providerToToml`'s inner value). */
export type Table = Record<string, unknown>;

/** Path item for issues raised inside rawTransform, so messages name the field and its line. */
export function fieldPath(input: Record<string, unknown>, key: string): [v.ObjectPathItem] {
  return [{ type: "object", origin: "value", input, key, value: input[key] }];
}

/** Drop undefined values: TOML has no null. */
export function compact(table: Table): Table {
  return Object.fromEntries(Object.entries(table).filter(([, value]) => value !== undefined));
}

export const NonEmpty = v.pipe(v.string(), v.minLength(1, "must not be empty"));
export const HttpUrl = v.pipe(
  v.string(),
  v.regex(/^https?:\/\/[^/\s]+/, 'must be an http:// or https:// URL, e.g. "https://kbs.example.com:8080"'),
);
export const Args = v.optional(v.array(v.string()), []);

/** `timeout_secs` of a command a provider runs (exec, oidc's token command) when the table has none. */
export const DEFAULT_COMMAND_TIMEOUT_SECS = 30;

/** Seconds, as a TOML integer or float. */
export const TimeoutSecs = v.optional(
  v.pipe(v.number(), v.minValue(0.001, "must be positive"), v.maxValue(3600, "must be at most 3600 s")),
  DEFAULT_COMMAND_TIMEOUT_SECS,
);

/** `timeout_secs` for TOML output: omitted when it is the default. */
export const timeoutSecsToToml = (timeoutMs: number): number | undefined =>
  timeoutMs === DEFAULT_COMMAND_TIMEOUT_SECS * 1000 ? undefined : timeoutMs / 1000;

/**
 * One provider's table: its name in `[<volume>.encrypt.<type>]`, the schema that validates the
 * table and normalises it into the provider's config, and the way back to TOML (upstream field
 * names where upstream has them). index.ts registers one per provider.
 */
export interface ProviderTable<C extends { type: string }> {
  readonly type: C["type"];
  readonly schema: v.GenericSchema<unknown, C>;
  toToml(config: C): Table;
}
