/** The source disk: copy it as raw, read its partitions, pick the root, extract the root filesystem. */
import { stat, truncate } from "node:fs/promises";
import { run } from "../../command.ts";
import { FdeError } from "../../errors.ts";
import { log } from "../../log.ts";
import { defineStep } from "../context.ts";
import { MiB } from "../layout.ts";
import { chooseRoot, findEsp, readPartitions, requireShrinkableRoot } from "../source.ts";

export const readSource = defineStep("readSource", "reading the source disk", {
  device: (c) => c.opts.input,
  sets: ["source"],
  async run(c, io) {
    await run("qemu-img", [
      "convert",
      "-O",
      "raw",
      ...(c.opts.device ? ["-f", "raw"] : []),
      c.opts.input,
      c.srcRaw,
    ]);
    const table = await readPartitions(c.srcRaw);
    const root = chooseRoot(table, c.opts.rootPartNum);
    const esp = findEsp(table);
    requireShrinkableRoot(root);
    if (!esp && !c.opts.uki) {
      throw new FdeError(
        "the source disk has no EFI system partition; GRUB mode keeps the source's shim and GRUB",
        {
          hint: "use --uki to boot a unified kernel image from a new ESP instead",
        },
      );
    }
    io.set("source", { table, root, esp });
    log.info(
      `  root filesystem: partition ${root.number} (${root.label ? `label ${root.label}, ` : ""}${(root.size / MiB).toFixed(0)} MiB)` +
        (esp ? `; ESP: partition ${esp.number}` : ""),
    );
  },
});

/**
 * Room added to the work copy of the root filesystem beyond the agent's own size, for the dracut
 * module, the configuration and ext4's allocation slack. prepareGuest writes these into the copy,
 * and a cloud image's root is often nearly full until its first boot grows it; shrinkRoot takes the
 * filesystem back to its minimum afterwards, so the converted disk does not carry the room.
 */
export const GUEST_INSTALL_SLACK = 64 * MiB;

export const extractRoot = defineStep("extractRoot", "extracting the root filesystem", {
  device: (c) => c.opts.input,
  needs: ["source"],
  async run(c, io) {
    const { root } = io.need("source");
    await run("dd", [
      `if=${c.srcRaw}`,
      `of=${c.rootfsImg}`,
      "bs=4M",
      `skip=${root.offset}`,
      `count=${root.size}`,
      "iflag=skip_bytes,count_bytes",
      "conv=sparse",
      "status=none",
    ]);
    // A clean filesystem before the guest is modified (the image may come from a running VM).
    await run("e2fsck", ["-f", "-y", c.rootfsImg], { okCodes: [0, 1] });
    const room = (await stat(c.opts.assets.agentBinary)).size + GUEST_INSTALL_SLACK;
    await truncate(c.rootfsImg, root.size + room);
    await run("resize2fs", [c.rootfsImg]);
  },
});
