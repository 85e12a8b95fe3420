/** Reading the source disk: partition table (sfdisk --json) and filesystems (blkid at an offset). */
import { runText } from "../command.ts";
import { probeTags } from "../disk/blkid.ts";
import { FdeError } from "../errors.ts";

export const ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
export const LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
export const LINUX_LVM_TYPE = "E6D6D379-F507-44C2-A23C-238F2A3DF928";

export interface Partition {
  number: number;
  offset: number;
  size: number;
  /** GPT type GUID (upper case) or MBR type byte as hex. */
  type: string;
  name?: string;
  fsType?: string;
  label?: string;
  uuid?: string;
}

export interface PartitionTable {
  label: "gpt" | "dos";
  partitions: Partition[];
}

interface SfdiskJson {
  partitiontable: {
    label: string;
    sectorsize?: number;
    partitions?: { node: string; start: number; size: number; type: string; name?: string }[];
  };
}

export function parseSfdiskJson(json: string): PartitionTable {
  const table = (JSON.parse(json) as SfdiskJson).partitiontable;
  const sector = table.sectorsize ?? 512;
  if (table.label !== "gpt" && table.label !== "dos") {
    throw new FdeError(`unsupported partition table type '${table.label}' (need gpt or dos)`);
  }
  return {
    label: table.label,
    partitions: (table.partitions ?? []).map((p) => ({
      number: Number(/(\d+)$/.exec(p.node)?.[1]),
      offset: p.start * sector,
      size: p.size * sector,
      type: p.type.toUpperCase(),
      name: p.name,
    })),
  };
}

export async function readPartitions(image: string): Promise<PartitionTable> {
  const table = parseSfdiskJson(await runText("sfdisk", ["--json", image]));
  for (const p of table.partitions) {
    const tags = await probeTags(image, { offset: p.offset, size: p.size });
    if (!tags) continue;
    p.fsType = tags.TYPE;
    p.label = tags.LABEL;
    p.uuid = tags.UUID;
  }
  return table;
}

/** The root filesystem: the requested partition, else the one labelled `root`, else the largest ext4/xfs. */
export function chooseRoot(table: PartitionTable, partNum?: number): Partition {
  const fsOk = (p: Partition) => p.fsType === "ext4" || p.fsType === "xfs";
  if (partNum !== undefined) {
    const p = table.partitions.find((x) => x.number === partNum);
    if (!p) throw new FdeError(`--rootfs-part-num ${partNum}: the source disk has no partition ${partNum}`);
    if (!fsOk(p)) {
      throw new FdeError(
        `--rootfs-part-num ${partNum}: partition ${partNum} holds ${p.fsType ?? "no filesystem"}, not ext4`,
      );
    }
    return p;
  }
  const labelled = table.partitions.find((p) => fsOk(p) && p.label === "root");
  if (labelled) return labelled;
  const candidates = table.partitions.filter(fsOk).sort((a, b) => b.size - a.size);
  if (!candidates[0]) {
    throw new FdeError("the source disk has no ext4 or xfs partition to use as the root filesystem", {
      hint: "pass --rootfs-part-num N, or check that SRC is a Linux disk image",
    });
  }
  return candidates[0];
}

/**
 * convert shrinks the root filesystem to its minimum (the rest of the disk becomes the delta) and
 * marks it read-only for dm-verity, both with e2fsprogs. xfs is found as a root so it can be
 * refused by name: it can grow but never shrink.
 */
export function requireShrinkableRoot(root: Partition): void {
  if (root.fsType === "ext4") return;
  const why = root.fsType === "xfs" ? "xfs filesystems can grow but never shrink" : "it is not ext4";
  throw new FdeError(
    `the root filesystem (partition ${root.number}) is ${root.fsType ?? "unknown"}; convert supports only ext4 roots, because it shrinks the root filesystem to its minimum size (the rest of the disk becomes the writable delta) and ${why}`,
    {
      hint: "convert an image whose root is ext4, for example by copying the files of this root into a new ext4 filesystem (mkfs.ext4 -d) first",
    },
  );
}

export function findEsp(table: PartitionTable): Partition | undefined {
  return table.partitions.find((p) => p.type === ESP_TYPE || p.type === "EF") ?? undefined;
}
