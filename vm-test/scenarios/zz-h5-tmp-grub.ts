// TEMPORARY local experiment by H5 (not committed): convert from source until assets are embedded.

import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventLogScenario } from "../../agent/test/refvalue/eventlog-check.ts";
import { defineScenario } from "../lib/scenario.ts";

export default defineScenario({
  description: "tmp",
  timeoutSec: 2400,
  run: (ctx) => {
    ctx.convert = async (opts) => {
      const out = join(ctx.outDir, "disk.raw");
      const cfg = mkdtempSync(join(ctx.outDir, "config-"));
      writeFileSync(join(cfg, "fde.toml"), opts.fde);
      const argv = [
        process.execPath,
        join(ctx.repo, "agent/src/main.ts"),
        "convert",
        "--in",
        opts.source!,
        "--out",
        out,
        "-c",
        cfg,
        "--rootfs-no-encryption",
      ];
      if (opts.uki) argv.push("--uki");
      const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
      const [o, e, code] = await Promise.all([
        new Response(p.stdout).text(),
        new Response(p.stderr).text(),
        p.exited,
      ]);
      writeFileSync(join(ctx.outDir, "convert.log"), o + e);
      ctx.check(code === 0, `convert failed: ${e.slice(-2000)}`);
      return out;
    };
    return eventLogScenario(ctx, (process.env.H5_MODE as "grub" | "uki") ?? "grub");
  },
});
