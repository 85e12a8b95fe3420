/** The source disk: copy it as raw, read its partitions, pick the root, extract the root filesystem. */
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
  },
});
