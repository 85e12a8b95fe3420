/** fde.toml builders and test keys for scenarios (keys come from the guest's cptest-key script). */

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
