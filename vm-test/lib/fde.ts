/** fde.toml builders and test keys for scenarios (keys come from the guest's cptest-key script). */
import type { ScenarioContext } from "./scenario.ts";

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
  /** Encrypt the rootfs with the key testKey("rootfs") (convert then needs the same key). */
  encryptRootfs: boolean;
}

/** fde.toml in upstream cryptpilot's format. */
export function fdeToml(o: FdeOptions): string {
  return [
    "[rootfs]",
    `delta_location = "${o.deltaLocation}"`,
    `delta_backend = "${o.deltaBackend}"`,
    "",
    ...(o.encryptRootfs ? [execProvider("rootfs.encrypt", "rootfs")] : []),
    "[delta]",
    `integrity = ${o.integrity ? "true" : "false"}`,
    "",
    execProvider("delta.encrypt", "delta"),
  ].join("\n");
}

/** The rootfs key argument for ctx.convert() matching fdeToml(o). */
export function rootfsKeyFor(o: FdeOptions): string | null {
  return o.encryptRootfs ? testKey("rootfs") : null;
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
