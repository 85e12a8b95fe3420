/**
 * Which kernel, initrd and command line GRUB boots: the default entry as GRUB computes it from
 * grub.cfg's `set default=` (`${next_entry}`/`${saved_entry}` from grubenv, a number, an id or a
 * title, `>` for submenus), over BLS entries (`blscfg`, loader/entries/*.conf) and menuentries.
 * An image that never booted has no saved_entry: GRUB then boots entry 0, and so do we.
 */

import type { FileTree } from "../disk/image/fs.ts";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { type MenuItem, type ParsedConfig, parseGrubConfig, splitWords, type Vars } from "./grubscript.ts";

export interface BootEntry {
  /** Where it came from, for messages: "grub.cfg entry 'Debian GNU/Linux'" or a BLS file. */
  origin: string;
  /** The `linux` command's words after the command name: kernel path, then arguments (expanded). */
  linux: string[];
  /** The `initrd` command's paths (expanded). */
  initrds: string[];
}

/** grubenv: `key=value` lines; the header and `#` padding have no `=`. */
export function parseGrubenv(text: string): Vars {
  const vars: Vars = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0 && !line.startsWith("#")) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

interface BlsEntry {
  id: string;
  fields: Map<string, string[]>;
}

function parseBls(id: string, text: string): BlsEntry {
  const fields = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    fields.set(m[1]!, [...(fields.get(m[1]!) ?? []), m[2]!]);
  }
  return { id, fields };
}

/** rpm's version comparison (rpmvercmp), which GRUB's blscfg uses to sort entries newest first. */
export function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0;
  const seg = /(\d+|[A-Za-z]+|~|\^)/g;
  const sa = a.match(seg) ?? [];
  const sb = b.match(seg) ?? [];
  for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
    const x = sa[i];
    const y = sb[i];
    if (x === "~" || y === "~") {
      if (x !== y) return x === "~" ? -1 : 1;
      continue;
    }
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const xn = /^\d/.test(x);
    const yn = /^\d/.test(y);
    if (xn !== yn) return xn ? 1 : -1;
    if (xn) {
      const d = BigInt(x) - BigInt(y);
      if (d !== 0n) return d > 0n ? 1 : -1;
    } else if (x !== y) {
      return x > y ? 1 : -1;
    }
  }
  return 0;
}

function blsEntries(boot: FileTree): BlsEntry[] {
  if (boot.kind("/loader/entries") !== "dir") return [];
  const entries = boot
    .list("/loader/entries")
    .filter((e) => e.name.endsWith(".conf") && e.kind === "file")
    .map((e) =>
      parseBls(e.name.slice(0, -5), new TextDecoder().decode(boot.readFile(`/loader/entries/${e.name}`))),
    );
  const version = (e: BlsEntry) => e.fields.get("version")?.[0] ?? e.id;
  return entries.sort((x, y) => rpmvercmp(version(y), version(x)) || (x.id < y.id ? 1 : -1));
}

type Item =
  | { kind: "entry"; title: string; id?: string; entry: () => BootEntry }
  | { kind: "submenu"; title: string; id?: string; items: Item[] };

function lastCommand(body: string[], names: string[], vars: Vars): string[] | undefined {
  let found: string[] | undefined;
  for (const line of body) {
    const words = splitWords(line, vars);
    if (words[0] && names.includes(words[0])) found = words.slice(1);
  }
  return found;
}

function menuItems(items: MenuItem[], vars: Vars, where: string): Item[] {
  return items.map((it): Item => {
    if (it.kind === "submenu")
      return { kind: "submenu", title: it.title, id: it.id, items: menuItems(it.entries, vars, where) };
    return {
      kind: "entry",
      title: it.title,
      id: it.id,
      entry: () => {
        const linux = lastCommand(it.body, ["linux", "linuxefi", "linux16"], vars);
        if (!linux?.length) throw new FdeError(`${where}: menu entry '${it.title}' has no linux command`);
        return {
          origin: `${where} menu entry '${it.title}'`,
          linux,
          initrds: lastCommand(it.body, ["initrd", "initrdefi", "initrd16"], vars) ?? [],
        };
      },
    };
  });
}

function blsItem(e: BlsEntry, vars: Vars, where: string): Item {
  return {
    kind: "entry",
    title: e.fields.get("title")?.[0] ?? e.id,
    id: e.id,
    entry: () => {
      const linux = e.fields.get("linux")?.[0];
      if (!linux) throw new FdeError(`${where}/loader/entries/${e.id}.conf has no 'linux' line`);
      // blscfg (rhboot) builds "linux ($root)<path> <options>" and "initrd ($root)<path>...";
      // GRUB then expands the variables, so the measured kernel path carries the device.
      const device = `(${vars.root})`;
      const options = (e.fields.get("options") ?? []).join(" ");
      const [kernel, ...extra] = splitWords(linux, vars);
      const initrds = splitWords((e.fields.get("initrd") ?? []).join(" "), vars);
      return {
        origin: `BLS entry ${where}/loader/entries/${e.id}.conf`,
        linux: [`${device}${kernel}`, ...extra, ...splitWords(options, vars)],
        initrds: initrds.map((p) => `${device}${p}`),
      };
    },
  };
}

/** Find an item by the GRUB default syntax: "2", "id", "title", "sub>entry". */
function select(items: Item[], selector: string): Item | undefined {
  const [head, ...rest] = selector.split(">");
  const key = head!.trim();
  const found = /^\d+$/.test(key) ? items[Number(key)] : items.find((i) => i.id === key || i.title === key);
  if (!found || rest.length === 0) return found;
  return found.kind === "submenu" ? select(found.items, rest.join(">")) : undefined;
}

/** The default selector GRUB evaluates at boot. */
function defaultSelector(cfg: ParsedConfig | undefined, env: Vars): string {
  const defaults = cfg?.assignments.filter((a) => a.name === "default") ?? [];
  if (env.next_entry && defaults.some((d) => d.raw.includes("next_entry"))) return env.next_entry;
  const last = defaults.filter((d) => !d.raw.includes("next_entry")).at(-1);
  if (!last) return env.saved_entry || "0"; // no grub.cfg default: GRUB_DEFAULT=saved style (upstream)
  if (last.raw.includes("saved_entry")) return env.saved_entry || "0";
  return last.value || "0";
}

export interface GrubInputs {
  /** The /boot tree (loader/entries, grub/grub.cfg live here). */
  boot: FileTree;
  /** grub.cfg text and where it came from, if any. */
  grubCfg?: { text: string; where: string };
  env: Vars;
  /** GRUB's `$root` while booting (e.g. "hd0,gpt2"). */
  root: string;
}

export function resolveBootEntry(input: GrubInputs): BootEntry {
  const vars: Vars = { ...input.env, root: input.root };
  vars.tuned_params ??= "";
  vars.tuned_initrd ??= "";
  const cfg = input.grubCfg ? parseGrubConfig(input.grubCfg.text, vars) : undefined;
  for (const a of cfg?.assignments ?? []) {
    // grub.cfg assignments run before the menu; grubenv (load_env) wins for kernelopts & co. as on RHEL.
    if (!(a.name in input.env) && a.name !== "default") vars[a.name] = a.value;
  }
  vars.root = input.root;
  const bls = blsEntries(input.boot);
  const where = input.grubCfg?.where ?? input.boot.name;
  let items: Item[];
  if (cfg) {
    items = cfg.items.flatMap((it) =>
      it.kind === "blscfg" ? bls.map((e) => blsItem(e, vars, input.boot.name)) : menuItems([it], vars, where),
    );
  } else {
    items = bls.map((e) => blsItem(e, vars, input.boot.name));
  }
  if (items.length === 0) {
    throw new FdeError(
      `no boot entries found: ${input.grubCfg ? `${input.grubCfg.where} has no menuentry or blscfg` : "no grub.cfg"} and ${input.boot.name} has no loader/entries/*.conf`,
    );
  }
  const selector = defaultSelector(cfg, input.env);
  let item = select(items, selector);
  if (!item) {
    log.warn(
      `GRUB default entry '${selector}' does not exist; GRUB falls back to the first entry, and so do we`,
    );
    item = items[0]!;
  }
  while (item.kind === "submenu") {
    if (item.items.length === 0) throw new FdeError(`GRUB default '${selector}' is an empty submenu`);
    item = item.items[0]!;
  }
  return item.entry();
}
