import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import { DELTA_KEY, diskFor, keyOverride, PLAIN_IMAGE } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde = PLAIN_IMAGE;

export default defineScenario({
  description:
    "dm-snapshot, persistent delta with integrity, plain rootfs: data survives a reboot on an enlarged disk; a wrong delta key stops the boot and the data is still there with the right key",
  async run(ctx) {
    const { disk } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true });
    expectFdeRoot(ctx, first, fde);

    await bootAfterGrow(ctx, disk, first, fde, { label: "after-grow", quick: true });

    const wrong = await ctx.boot(disk, {
      label: "wrong-key",
      quick: true,
      append: [keyOverride(DELTA_KEY, "not-the-delta-key")],
    });
    ctx.expectStopped(wrong, /cannot open the persistent delta volume/, "the delta unlock error");

    const third = await ctx.boot(disk, { label: "right-key-again", quick: true });
    expectFdeRoot(ctx, third, fde);
    ctx.check(
      third.markers.get("previous-boots") === "1,2",
      `data written before the wrong-key boot is gone (previous-boots=${third.markers.get("previous-boots")})`,
      third,
    );
  },
});
