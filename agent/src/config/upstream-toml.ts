/**
 * The bytes upstream hashes for a configuration bundle: `FdeConfigBundle::gen_hash_content`,
 * i.e. Rust `toml` 0.8's `to_string` of the deserialised structs (toml_edit 0.22 encoding rules).
 * A user-data bundle is measured by this hash, so the broker's policy value must be the same
 * whether upstream or we compute it: same struct field order, same defaults filled in, same
 * string quoting. Fields upstream does not know (ours) are kept, after upstream's fields in
 * sorted order, so that nothing a bundle can set escapes the measurement.
 */
import { FdeError } from "../errors.ts";

type Scalar = string | number | boolean;
export type OrderedValue = Scalar | OrderedValue[] | OrderedTable;
/** A TOML table with its keys in the order they are written. */
export class OrderedTable {
  readonly entries: [string, OrderedValue][] = [];
  set(key: string, value: OrderedValue | undefined): this {
    if (value !== undefined) this.entries.push([key, value]);
    return this;
  }
}

/** cdh_type = "daemon"'s socket when none is given (upstream provider/kbs default_cdh_socket). */
export const DEFAULT_CDH_SOCKET = "unix:///run/confidential-containers/cdh.sock";

type Raw = Record<string, unknown>;
const isTable = (x: unknown): x is Raw => typeof x === "object" && x !== null && !Array.isArray(x);

/** Plain TOML data (as parsed) in a fixed order: every key, sorted. */
function generic(value: unknown, where: string): OrderedValue {
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  if (Array.isArray(value)) return value.map((v, i) => generic(v, `${where}[${i}]`));
  // smol-toml's tables have a null prototype; its dates are Date objects (refused below).
  const proto = isTable(value) ? Object.getPrototypeOf(value) : undefined;
  if (isTable(value) && (proto === null || proto === Object.prototype)) {
    const t = new OrderedTable();
    for (const k of Object.keys(value).sort()) t.set(k, generic(value[k], `${where}.${k}`));
    return t;
  }
  // Validation accepts no floats or dates; refuse rather than measure an approximation.
  throw new FdeError(`${where}: this value type cannot be measured`);
}

/** `known` keys in upstream's order (absent ones skipped, as serde skips None), then the rest sorted. */
function layout(raw: Raw, where: string, known: [string, (v: unknown) => OrderedValue][]): OrderedTable {
  const t = new OrderedTable();
  const done = new Set<string>();
  for (const [key, encode] of known) {
    done.add(key);
    if (raw[key] !== undefined) t.set(key, encode(raw[key]));
  }
  for (const k of Object.keys(raw).sort()) if (!done.has(k)) t.set(k, generic(raw[k], `${where}.${k}`));
  return t;
}

const scalar = (v: unknown) => generic(v, "value");

function provider(name: string, raw: Raw, where: string): OrderedTable {
  const w = `${where}.${name}`;
  switch (name) {
    case "exec":
      return layout({ args: [], ...raw }, w, [
        ["command", scalar],
        ["args", scalar],
      ]);
    case "kbs": {
      // upstream: #[serde(tag = "cdh_type")] enum flattened before key_uri.
      const cdhType = (raw.cdh_type as string | undefined) ?? "one-shot";
      const filled = cdhType === "daemon" ? { cdh_socket: DEFAULT_CDH_SOCKET, ...raw } : raw;
      const fields: [string, (v: unknown) => OrderedValue][] =
        cdhType === "daemon"
          ? [["cdh_socket", scalar]]
          : [
              ["kbs_url", scalar],
              ["kbs_root_cert", scalar],
            ];
      return layout({ ...filled, cdh_type: cdhType }, w, [
        ["cdh_type", scalar],
        ...fields,
        ["key_uri", scalar],
      ]);
    }
    case "kms": {
      // upstream: AuthMode, an externally tagged enum flattened in: a ClientKey or EcsRamRole table.
      const ram = raw.auth_mode === "ecs_ram_role";
      const variantKeys = ram
        ? ["ecs_ram_role_name", "region_id"]
        : ["client_key", "client_key_password", "kms_cert_pem"];
      const variant = layout(
        Object.fromEntries(variantKeys.filter((k) => raw[k] !== undefined).map((k) => [k, raw[k]])),
        w,
        variantKeys.map((k) => [k, scalar]),
      );
      const rest = Object.fromEntries(
        Object.entries(raw).filter(([k]) => k !== "auth_mode" && !variantKeys.includes(k)),
      );
      const t = layout(rest, w, [
        ["kms_instance_id", scalar],
        ["secret_name", scalar],
      ]);
      return t.set(ram ? "EcsRamRole" : "ClientKey", variant);
    }
    case "oidc":
      return layout(raw, w, [
        ["command", scalar],
        ["args", scalar],
        ["key_id", scalar],
        [
          "kms",
          (kms) =>
            layout(kms as Raw, `${w}.kms`, [
              ["type", scalar],
              ["oidc_provider_arn", scalar],
              ["role_arn", scalar],
              ["region_id", scalar],
            ]),
        ],
      ]);
    default: // otp, tpm2: upstream's structs are empty; ours may add fields (tpm2 pcrs, ...)
      return layout(raw, w, []);
  }
}

function encrypt(raw: unknown, where: string): OrderedTable {
  const t = new OrderedTable();
  for (const name of Object.keys(raw as Raw).sort()) {
    t.set(name, provider(name, (raw as Raw)[name] as Raw, `${where}.encrypt`));
  }
  return t;
}

/** The bundle (parsed TOML, already validated) in upstream's struct layout. */
export function upstreamLayout(bundle: Raw): OrderedTable {
  return layout(bundle, "bundle", [
    [
      "global",
      (g) =>
        layout(g as Raw, "global", [
          ["boot", (b) => layout({ verbose: false, ...(b as Raw) }, "global.boot", [["verbose", scalar]])],
        ]),
    ],
    [
      "fde",
      (f) => {
        const fde = f as Raw;
        // aliases: [data] for [delta], rw_overlay for delta_location; upstream writes the new names.
        const { data, ...rest } = fde;
        const merged = data !== undefined && rest.delta === undefined ? { ...rest, delta: data } : fde;
        return layout(merged, "fde", [
          [
            "rootfs",
            (r) => {
              const { rw_overlay, ...rr } = r as Raw;
              const rootfs =
                rw_overlay !== undefined && rr.delta_location === undefined
                  ? { ...rr, delta_location: rw_overlay }
                  : (r as Raw);
              return layout(rootfs, "fde.rootfs", [
                ["delta_location", scalar],
                ["delta_backend", scalar],
                ["encrypt", (e) => encrypt(e, "fde.rootfs")],
              ]);
            },
          ],
          [
            "delta",
            (d) =>
              layout({ integrity: false, ...(d as Raw) }, "fde.delta", [
                ["integrity", scalar],
                ["encrypt", (e) => encrypt(e, "fde.delta")],
              ]),
          ],
        ]);
      },
    ],
  ]);
}

// ---- toml_edit 0.22's encoder, the subset a bundle uses ----

/** toml_edit infer_all_style + to_string_repr: basic or literal, one line or `"""`/`'''` block. */
export function tomlString(value: string): string {
  let multiline = false;
  let singles = 0;
  let maxSingles = 0;
  let preferLiteral = false;
  let canBePretty = true;
  for (const ch of value) {
    if (canBePretty) {
      if (ch === "'") {
        singles++;
        if (singles >= 3) canBePretty = false;
      } else {
        if (singles > maxSingles) maxSingles = singles;
        singles = 0;
      }
      const c = ch.codePointAt(0)!;
      if (ch === "\t") {
        // allowed as is
      } else if (ch === '"' || ch === "\\") preferLiteral = true;
      else if (ch === "\n") multiline = true;
      else if (c <= 0x1f || c === 0x7f) canBePretty = false;
    } else if (ch === "\n") multiline = true;
  }
  if (singles > 0 && value.endsWith("'")) canBePretty = false;
  if (!preferLiteral) canBePretty = false;
  if (canBePretty) {
    if (singles > maxSingles) maxSingles = singles;
    if (multiline) return `'''\n${value}'''`;
    return maxSingles >= 1 ? `'''${value}'''` : `'${value}'`;
  }
  let out = "";
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (ch === "\b") out += "\\b";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += multiline ? "\n" : "\\n";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\r") out += "\\r";
    else if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (c <= 0x1f || c === 0x7f) out += `\\u${c.toString(16).toUpperCase().padStart(4, "0")}`;
    else out += ch;
  }
  return multiline ? `"""\n${out}"""` : `"${out}"`;
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;
const tomlKey = (k: string) => (BARE_KEY.test(k) ? k : tomlString(k).replace(/^'''\n?|'''$/g, "'"));

function inlineValue(v: OrderedValue, pretty: boolean): string {
  if (typeof v === "string") return tomlString(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) {
    const items = v.map((x) => inlineValue(x, false));
    if (pretty && items.length > 1) return `[${items.map((i) => `\n    ${i}`).join(",")},\n]`;
    return `[${items.join(", ")}]`;
  }
  return `{ ${v.entries.map(([k, x]) => `${tomlKey(k)} = ${inlineValue(x, false)}`).join(", ")} }`;
}

/**
 * toml 0.8 `to_string` (pretty: `to_string_pretty`, arrays of 2+ items one per line): a table's
 * header only when it has values or is empty, a blank line before every header but the first.
 */
export function encodeDocument(root: OrderedTable, pretty = false): string {
  let out = "";
  let first = true;
  const visit = (t: OrderedTable, path: string[]) => {
    const values = t.entries.filter(([, v]) => !(v instanceof OrderedTable));
    if (path.length === 0) {
      if (values.length > 0) first = false;
    } else if (values.length > 0 || t.entries.length === 0) {
      out += `${first ? "" : "\n"}[${path.map(tomlKey).join(".")}]\n`;
      first = false;
    }
    for (const [k, v] of values) out += `${tomlKey(k)} = ${inlineValue(v, pretty)}\n`;
    for (const [k, v] of t.entries) if (v instanceof OrderedTable) visit(v, [...path, k]);
  };
  visit(root, []);
  return out;
}

/** upstream gen_hash_content: the compact serialisation that is hashed. */
export const hashContent = (bundle: Record<string, unknown>): string =>
  encodeDocument(upstreamLayout(bundle));

/** upstream gen_hash_hex: sha384 of the hash content, lowercase hex. */
export function bundleSha384(bundle: Record<string, unknown>): string {
  // Bun's hasher rather than node:crypto, whose import would cost every `config check` start-up.
  return new Bun.CryptoHasher("sha384").update(hashContent(bundle)).digest("hex");
}
