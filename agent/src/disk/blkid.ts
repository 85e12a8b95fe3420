/**
 * The one place blkid is run and its output parsed: convert reads the source disk's filesystems
 * through it, the volume commands the signature on a device they would format, the boot stage
 * (through blockdev.cowSignature) a device's type. Always the low-level probe (`-p`): the cache and
 * udev's database may be stale or, in the initrd, absent. blkid exits 2 for "nothing found".
 */
import { run } from "../command.ts";

/** blkid's `-o export` KEY=value lines as a record (a repeated key keeps its last value). */
export function parseBlkidExport(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/**
 * The signature a user would recognise: the superblock TYPE, else "<PTTYPE> partition table".
 * "atari" is a known false positive of blkid on blank (e.g. all-random) devices.
 */
export function signatureOf(tags: Record<string, string>): string | undefined {
  if (tags.TYPE) return tags.TYPE;
  const pt = tags.PTTYPE;
  if (pt && pt !== "atari") return `${pt} partition table`;
  return undefined;
}

/** signatureOf(parseBlkidExport(text)). */
export function signatureFromExport(text: string): string | undefined {
  return signatureOf(parseBlkidExport(text));
}

/** A byte range of a file or device to probe (a partition inside a disk image). */
export interface ProbeRegion {
  offset: number;
  size: number;
}

/** Every tag blkid's low-level probe finds on DEVICE (or a region of it), or undefined for none. */
export async function probeTags(
  device: string,
  region?: ProbeRegion,
): Promise<Record<string, string> | undefined> {
  const where = region ? ["-O", String(region.offset), "-S", String(region.size)] : [];
  const { code, stdout } = await run("blkid", ["-p", "-o", "export", ...where, device], {
    okCodes: [0, 2],
    env: { LC_ALL: "C" },
  });
  return code === 0 ? parseBlkidExport(new TextDecoder().decode(stdout)) : undefined;
}

/** The signature blkid's low-level probe finds on DEVICE, or undefined. */
export async function probeSignature(device: string): Promise<string | undefined> {
  const tags = await probeTags(device);
  return tags ? signatureOf(tags) : undefined;
}

/** The superblock TYPE blkid's low-level probe finds on DEVICE, or undefined. */
export async function probeType(device: string): Promise<string | undefined> {
  return (await probeTags(device))?.TYPE || undefined;
}
