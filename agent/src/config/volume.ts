/**
 * Data volumes: one file per volume in `<config-dir>/volumes/*.toml`, upstream cryptpilot-crypt's
 * format (`volume`, `dev`, `auto_open`, `makefs`, `integrity`, `[encrypt.<provider>]`) plus our
 * optional `open_in_initrd` (opened before root by the initrd unit) and `[mount]` table (an
 * /etc/fstab line's mount point and options). The key provider
 * tables are the same schemas as fde.toml's, so every provider, otp included, is accepted.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { isReservedMapperName, RESERVED_MAPPER_NAMES, RESERVED_MAPPER_PREFIX } from "../disk/names.ts";
import { ConfigError } from "../errors.ts";
import { ConfigFileError, type ConfigIssue, findKeyLine, issuesFromValibot } from "./issues.ts";
import { EncryptSchema, fieldPath, type ProviderConfig } from "./providers/index.ts";
import { readToml, type TomlSource } from "./toml.ts";

export const MAKEFS_TYPES = ["ext4", "xfs", "vfat", "swap"] as const;
export type MakeFs = (typeof MAKEFS_TYPES)[number];

export interface VolumeMount {
  /** Absolute directory to mount /dev/mapper/<volume> on, or "swap" to enable it as swap. */
  mountpoint: string;
  /** fstab's fourth field, comma-separated ("defaults" when absent). */
  options: string;
}

export interface VolumeConfig {
  /** The file this volume came from, for messages. */
  file: string;
  /** Mapper name: the volume opens as /dev/mapper/<volume>. */
  volume: string;
  /** The underlying (encrypted) block device. */
  dev: string;
  autoOpen: boolean;
  /** Opened in the initrd, before root (cryptpilot-volumes-initrd.service); only with autoOpen. */
  openInInitrd: boolean;
  makefs?: MakeFs;
  integrity: boolean;
  encrypt: ProviderConfig;
  mount?: VolumeMount;
}

const VolumeName = v.pipe(
  v.string(),
  v.regex(
    /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,126}$/,
    "must be a device-mapper name: letters, digits and _ . + -, not starting with a punctuation mark",
  ),
  v.check(
    (name) => !isReservedMapperName(name),
    `is reserved for the FDE boot volumes (${RESERVED_MAPPER_NAMES.join(", ")}, ${RESERVED_MAPPER_PREFIX}*); pick another name`,
  ),
);

const MountSchema = v.strictObject({
  mountpoint: v.pipe(
    v.string(),
    v.check(
      (p) => p === "swap" || (p.startsWith("/") && p !== "/" && !p.split("/").includes("..")),
      'must be an absolute directory other than "/" (without "..") or "swap"',
    ),
  ),
  options: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^[^\s,]+(,[^\s,]+)*$/, 'must be comma-separated options like "nodev,noatime"'),
    ),
    "defaults",
  ),
});

export const VolumeSchema = v.pipe(
  v.strictObject({
    volume: VolumeName,
    dev: v.pipe(v.string(), v.regex(/^\/\S+$/, "must be an absolute device path, e.g. /dev/vdb")),
    auto_open: v.optional(v.boolean(), false),
    open_in_initrd: v.optional(v.boolean(), false),
    makefs: v.optional(v.picklist(MAKEFS_TYPES)),
    integrity: v.optional(v.boolean(), false),
    encrypt: EncryptSchema,
    mount: v.optional(MountSchema),
  }),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const t = dataset.value;
    if (t.open_in_initrd && !t.auto_open) {
      // An explicit pair: a volume opened at boot shows as auto-opened everywhere (show, --auto).
      addIssue({
        message: "open_in_initrd = true needs auto_open = true (the initrd opens it at every boot)",
        path: fieldPath(t, "open_in_initrd"),
      });
      return NEVER;
    }
    const swapMount = t.mount?.mountpoint === "swap";
    if (t.mount && swapMount !== (t.makefs === "swap")) {
      addIssue({
        message: swapMount
          ? 'mountpoint = "swap" needs makefs = "swap"'
          : 'a swap volume (makefs = "swap") is enabled with mountpoint = "swap", not mounted on a directory',
        path: fieldPath(t, "mount"),
      });
      return NEVER;
    }
    return t;
  }),
);

function normalise(file: string, t: v.InferOutput<typeof VolumeSchema>): VolumeConfig {
  const out: VolumeConfig = {
    file,
    volume: t.volume,
    dev: t.dev,
    autoOpen: t.auto_open,
    openInInitrd: t.open_in_initrd,
    integrity: t.integrity,
    encrypt: t.encrypt,
  };
  if (t.makefs !== undefined) out.makefs = t.makefs;
  if (t.mount !== undefined) out.mount = { mountpoint: t.mount.mountpoint, options: t.mount.options };
  return out;
}

export function parseVolume(source: TomlSource): VolumeConfig {
  const result = v.safeParse(VolumeSchema, source.data, { abortEarly: false });
  if (!result.success) throw new ConfigFileError(issuesFromValibot(source.file, source.text, result.issues));
  return normalise(source.file, result.output);
}

export const volumesDir = (configDir: string) => join(configDir, "volumes");

/** The *.toml files of the volumes directory, sorted; none when the directory does not exist. */
export async function volumeFiles(configDir: string): Promise<string[]> {
  const dir = volumesDir(configDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new ConfigError(`cannot read ${dir}: ${(cause as Error).message}`, { cause });
  }
  return names
    .filter((n) => n.endsWith(".toml"))
    .sort()
    .map((n) => join(dir, n));
}

export interface CheckedVolumes {
  volumes: VolumeConfig[];
  issues: ConfigIssue[];
}

/**
 * Load every volume file, collecting all problems (one bad file does not hide the others).
 * Two files naming the same volume are an issue on the second one.
 */
export async function checkVolumes(configDir: string): Promise<CheckedVolumes> {
  const checked: CheckedVolumes = { volumes: [], issues: [] };
  const seen = new Map<string, string>();
  for (const file of await volumeFiles(configDir)) {
    let source: TomlSource | undefined;
    try {
      source = await readToml(file);
      if (source === undefined) continue; // removed while we were listing
      const volume = parseVolume(source);
      const other = seen.get(volume.volume);
      if (other !== undefined) {
        const line = findKeyLine(source.text, ["volume"]);
        checked.issues.push({
          file,
          ...(line === undefined ? {} : { line }),
          field: "volume",
          message: `volume '${volume.volume}' is already defined in ${other}; volume names must be unique`,
        });
        continue;
      }
      seen.set(volume.volume, file);
      checked.volumes.push(volume);
    } catch (err) {
      if (err instanceof ConfigFileError) checked.issues.push(...err.issues);
      else if (err instanceof ConfigError) checked.issues.push({ file, message: err.message });
      else throw err;
    }
  }
  checked.volumes.sort((a, b) => a.volume.localeCompare(b.volume));
  return checked;
}

/** All volumes; throws ConfigFileError listing every problem when any file is invalid. */
export async function loadVolumes(configDir: string): Promise<VolumeConfig[]> {
  const { volumes, issues } = await checkVolumes(configDir);
  if (issues.length > 0) throw new ConfigFileError(issues);
  return volumes;
}

/** One volume by name, with a message listing the configured ones when it is unknown. */
export async function loadVolume(configDir: string, name: string): Promise<VolumeConfig> {
  const volumes = await loadVolumes(configDir);
  const found = volumes.find((vol) => vol.volume === name);
  if (found) return found;
  const known = volumes.map((vol) => vol.volume);
  throw new ConfigError(
    `no volume '${name}' in ${volumesDir(configDir)} (${known.length > 0 ? `configured: ${known.join(", ")}` : "no volume files there"})`,
    { hint: "a volume is named by the `volume` field of its file, not by the file name" },
  );
}
