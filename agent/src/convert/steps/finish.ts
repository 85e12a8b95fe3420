/** The assembled image becomes the output: renamed (or converted to qcow2), or written onto the device. */
import { rename, rm } from "node:fs/promises";
import { run } from "../../command.ts";
import { log } from "../../log.ts";
import { type ConvertCtx, defineStep } from "../context.ts";
import { MiB } from "../layout.ts";

export const finish = defineStep(
  "finish",
  (o) => (o.device ? `writing the result to ${o.output}` : `finishing ${o.output}`),
  {
    device: (c) => c.opts.output,
    needs: ["lvm", "verity"],
    async run(c, io) {
      const o = c.opts;
      if (o.device) {
        // Not sparse: every byte of the partitions, GPT and LVs must be the new image's (zeros too).
        const size = Bun.file(c.partial).size;
        const free = io.need("lvm").pvFree;
        const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
        if (o.wipeFreedSpace || free.size === 0) {
          await writeRange(c, 0, size);
          if (free.size > 0) log.info(`  zeroed the ${mib(free.size)} of freed space (--wipe-freed-space)`);
          return;
        }
        await writeRange(c, 0, free.offset);
        await writeRange(c, free.offset + free.size, size - free.offset - free.size);
        log.warn(
          `the freed space (${mib(free.size)} at ${o.output} offset ${free.offset}, the future delta) keeps its old contents, which may include plaintext of the old root filesystem, until the delta overwrites it; --wipe-freed-space zeroes it`,
        );
        return;
      }
      if (o.output.endsWith(".qcow2")) {
        const q = `${c.partial}.qcow2`;
        c.cleanup.push("partial qcow2", () => rm(q, { force: true }));
        await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", c.partial, q]);
        await rename(q, o.output);
      } else {
        await rename(c.partial, o.output);
      }
      log.info(`  wrote ${o.output} (root hash ${io.need("verity").rootHash})`);
    },
  },
);

/** Copy [offset, offset + length) of the assembled image onto the device, every byte (zeros too). */
async function writeRange(c: ConvertCtx, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  await run("dd", [
    `if=${c.partial}`,
    `of=${c.opts.output}`,
    "bs=4M",
    `skip=${offset}`,
    `seek=${offset}`,
    `count=${length}`,
    "iflag=skip_bytes,count_bytes",
    "oflag=seek_bytes",
    "conv=notrunc,fsync",
    "status=none",
  ]);
}
