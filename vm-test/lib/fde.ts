/** fde.toml builders and test keys for scenarios (keys come from the guest's cptest-key script). */
import type { ScenarioContext } from "./scenario.ts";

/**
 * Key names for cptest-key. Its keys ("cptest-fixed-key-NAME") for these are 32 bytes or longer,
 * so LUKS2 gives them the minimal PBKDF of machine keys (disk/luks.ts pbkdfFor), as a real random
 * provider key gets; PASSPHRASE_KEY is short, a passphrase that keeps cryptsetup's argon2id.
 */
export const ROOTFS_KEY = "rootfs-5c1e9a07d3b8";
export const DELTA_KEY = "delta-8e42b6d09a1f";
export const PASSPHRASE_KEY = "pass";

/** The key the guest's /usr/local/bin/cptest-key prints for `name` (unless cptest.key.NAME= overrides it). */
export function testKey(name: string): string {
  return `cptest-fixed-key-${name}`;
}

/** Kernel argument that makes cptest-key print `value` for `name` on this boot. */
export function keyOverride(name: string, value: string): string {
  return `cptest.key.${name}=${value}`;
}

/** An exec provider table that asks cptest-key for the key `name`. */
export function execProvider(table: string, name: string): string {
  return `[${table}.exec]\ncommand = "/usr/local/bin/cptest-key"\nargs = ["${name}"]\n`;
}

export interface FdeOptions {
  deltaLocation: "disk" | "disk-persist" | "ram";
  deltaBackend: "dm-snapshot" | "overlayfs";
  integrity?: boolean;
  /** Encrypt the rootfs with the key testKey(ROOTFS_KEY) (convert then needs the same key). */
  encryptRootfs: boolean;
  /** The delta's key name (default DELTA_KEY). */
  deltaKey?: string;
}

/** fde.toml in upstream cryptpilot's format. */
export function fdeToml(o: FdeOptions): string {
  return [
    "[rootfs]",
    `delta_location = "${o.deltaLocation}"`,
    `delta_backend = "${o.deltaBackend}"`,
    "",
    ...(o.encryptRootfs ? [execProvider("rootfs.encrypt", ROOTFS_KEY)] : []),
    "[delta]",
    `integrity = ${o.integrity ? "true" : "false"}`,
    "",
    execProvider("delta.encrypt", o.deltaKey ?? DELTA_KEY),
  ].join("\n");
}

/** The rootfs key argument for ctx.convert() matching fdeToml(o). */
export function rootfsKeyFor(o: FdeOptions): string | null {
  return o.encryptRootfs ? testKey(ROOTFS_KEY) : null;
}

/**
 * The two conversions the FDE scenarios share (each converted once per run): an encrypted rootfs
 * with upstream's defaults, and a plain rootfs with a persistent, integrity-protected delta.
 */
export const ENCRYPTED_IMAGE: FdeOptions = {
  deltaLocation: "disk",
  deltaBackend: "dm-snapshot",
  encryptRootfs: true,
};
export const PLAIN_IMAGE: FdeOptions = {
  deltaLocation: "disk-persist",
  deltaBackend: "dm-snapshot",
  integrity: true,
  encryptRootfs: false,
};

/**
 * A converted disk for the layout `fde`: the shared conversion with the same rootfs encryption,
 * plus, when `fde` differs from its config, the initrd files that make a direct boot use `fde`
 * (the stages read fde.toml at boot; the conversion itself does not depend on the delta settings).
 */
export async function diskFor(
  ctx: ScenarioContext,
  fde: FdeOptions,
): Promise<{ disk: string; initrdFiles?: Record<string, string> }> {
  const image = fde.encryptRootfs ? ENCRYPTED_IMAGE : PLAIN_IMAGE;
  const disk = await ctx.convert({ fde: fdeToml(image), rootfsKey: rootfsKeyFor(image) });
  if (fdeToml(image) === fdeToml(fde)) return { disk };
  return { disk, initrdFiles: { "/etc/cryptpilot/fde.toml": fdeToml(fde) } };
}
