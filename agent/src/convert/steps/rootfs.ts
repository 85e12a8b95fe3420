/** The root filesystem image: shrunk, read-only, verity-hashed, then LUKS2-encrypted or sized as is. */
import { truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, runText } from "../../command.ts";
import * as luks from "../../disk/luks.ts";
import * as verity from "../../disk/verity.ts";
import { FdeError } from "../../errors.ts";
import { log } from "../../log.ts";
import { defineStep, needOption } from "../context.ts";
import { alignUp, MiB } from "../layout.ts";

/** LUKS2 header room taken from the end of the rootfs image by offline encryption. */
export const LUKS_REDUCE = 32 * MiB;
/** Slack after the rootfs image in its LV (as upstream). */
export const ROOTFS_LV_SLACK = 16 * MiB;

export const shrinkRoot = defineStep("shrinkRoot", "shrinking the root filesystem", {
  device: (c) => c.rootfsImg,
  async run(c) {
    await run("tune2fs", ["-O", "read-only", c.rootfsImg]);
    await run("e2fsck", ["-f", "-y", c.rootfsImg], { okCodes: [0, 1] });
    await run("resize2fs", ["-M", c.rootfsImg]);
    const info = await runText("dumpe2fs", ["-h", c.rootfsImg]);
    const num = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(info)?.[1]);
    const bytes = alignUp(num("Block count") * num("Block size"), 4096);
    if (!Number.isFinite(bytes) || bytes <= 0)
      throw new FdeError("cannot read the shrunk filesystem size from dumpe2fs");
    await truncate(c.rootfsImg, bytes);
    log.info(`  root filesystem is now ${(bytes / MiB).toFixed(0)} MiB`);
  },
});

export const formatVerity = defineStep("formatVerity", "computing the dm-verity hash tree", {
  device: (c) => c.rootfsImg,
  sets: ["verity"],
  async run(c, io) {
    const { rootHash } = await verity.format(c.rootfsImg, c.hashImg);
    io.set("verity", { rootHash });
    await writeFile(join(c.cfgDir, "metadata.toml"), `type = 1\nroot_hash = "${rootHash}"\n`);
    log.info(`  root hash ${rootHash}`);
  },
});

export const encryptRoot = defineStep("encryptRoot", "encrypting the root filesystem (LUKS2, offline)", {
  device: (c) => c.rootfsImg,
  sets: ["rootfsLv"],
  async run(c, io) {
    const key = needOption(c.opts.rootfsKey, "encryptRoot", "a rootfs key");
    const enc = join(c.work, "rootfs.luks");
    await run("cp", ["--sparse=always", c.rootfsImg, enc]);
    await truncate(enc, Bun.file(c.rootfsImg).size + LUKS_REDUCE);
    await luks.encryptOffline(enc, key, LUKS_REDUCE);
    io.set("rootfsLv", { file: enc, size: Bun.file(enc).size });
  },
});

export const plainRoot = defineStep("plainRoot", "sizing the unencrypted rootfs volume", {
  sets: ["rootfsLv"],
  async run(c, io) {
    io.set("rootfsLv", { file: c.rootfsImg, size: Bun.file(c.rootfsImg).size + ROOTFS_LV_SLACK });
  },
});
