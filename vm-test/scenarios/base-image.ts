import { testCmdline } from "../lib/context.ts";
import { defineScenario } from "../lib/scenario.ts";

// Harness self-test without the agent: the plain base image with its stock Debian initrd reaches
// multi-user.target and the reporter's markers come back.
export default defineScenario({
  description:
    "harness self-test (not in 'all'): the plain base image with its stock initrd reaches multi-user.target",
  inAll: false,
  async run(ctx) {
    const disk = await ctx.sourceDisk();
    const boot = await ctx.boot(disk, {
      label: "stock",
      cmdline: `root=LABEL=root ro ${testCmdline(ctx.base.arch)}`,
    });
    ctx.expectReported(boot);
    ctx.check(
      boot.markers.get("root-source") === "/dev/vda2",
      `root is ${boot.markers.get("root-source")}`,
      boot,
    );
    ctx.check(
      boot.markers.get("system-running") === "running",
      `system is ${boot.markers.get("system-running")}`,
      boot,
    );
  },
});
