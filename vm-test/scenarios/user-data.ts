import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withSwtpm } from "../../agent/testkit/swtpm.ts";
import { makeMaterial } from "../aliyun/material.ts";
import { AliyunWorld } from "../aliyun/servers.ts";
import { startBroker } from "../kbs/broker.ts";
import { freePort } from "../lib/net.ts";
import { METADATA_USER_NET } from "../lib/qemu.ts";
import { defineScenario, type ScenarioContext } from "../lib/scenario.ts";

// One image, many instances (issue #17). The image's initrd takes the delta key from the broker's
// resource INITRD_RESOURCE; an instance's user data (the Alibaba Cloud metadata service at
// 100.100.100.200, IMDSv2, here the test server behind QEMU's guestfwd) carries a configuration
// bundle naming USER_DATA_RESOURCE instead. The broker releases USER_DATA_RESOURCE only to TPM
// evidence whose AA event log replays against the quoted PCRs and holds the bundle's hash
// (`config reference-value`), and INITRD_RESOURCE only to evidence without such an entry.
// (1) user data served: the stage measures the bundle into PCR 23, the boot gets the user-data
// resource; (2) no metadata service: the initrd's configuration after at most the 1 s probe;
// (3) a bundle the policy does not expect (one field differs): the key is refused, the boot stops.

const INITRD_RESOURCE = "default/key/delta-initrd";
const USER_DATA_RESOURCE = "default/key/delta-userdata";
const AAEL_KEY = "cryptpilot.alibabacloud.com load_config_untrusted";
const IMDS = { address: "100.100.100.200", port: 80 };

const fdeToml = (url: string, resource: string) =>
  [
    "[rootfs]",
    'delta_location = "disk"',
    'delta_backend = "dm-snapshot"',
    "",
    "[delta]",
    "integrity = false",
    "",
    "[delta.encrypt.kbs]",
    `url = "${url}"`,
    `resource_path = "${resource}"`,
    "",
  ].join("\n");

/** A bundle as users make one: `config dump` of a configuration directory, and its policy hash. */
async function bundleOf(
  ctx: ScenarioContext,
  fde: string,
  global?: string,
): Promise<{ text: string; sha384: string }> {
  const dir = mkdtempSync(join(tmpdir(), "cptest-bundle-"));
  try {
    writeFileSync(join(dir, "fde.toml"), fde);
    if (global) writeFileSync(join(dir, "global.toml"), global);
    const dump = Bun.spawnSync([ctx.agent, "config", "dump", "-c", dir], { stderr: "pipe" });
    if (dump.exitCode !== 0) throw new Error(`config dump failed: ${dump.stderr.toString()}`);
    const text = dump.stdout.toString();
    writeFileSync(join(dir, "bundle.toml"), text);
    const ref = Bun.spawnSync([ctx.agent, "config", "reference-value", join(dir, "bundle.toml")], {
      stderr: "pipe",
    });
    if (ref.exitCode !== 0) throw new Error(`config reference-value failed: ${ref.stderr.toString()}`);
    const { sha384 } = JSON.parse(ref.stdout.toString()) as { sha384: string };
    return { text, sha384 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export default defineScenario({
  description:
    "user data (issue #17): a bundle from the instance metadata service replaces the initrd's kbs resource, measured into PCR 23 and checked by the broker's AAEL policy; no metadata service -> the initrd's config; an unexpected bundle -> key refused",
  skip: () =>
    Bun.which("swtpm") && Bun.which("tpm2_checkquote") && Bun.which("socat")
      ? undefined
      : "swtpm, tpm2-tools or socat is not installed",
  timeoutSec: 2400,
  async run(ctx) {
    const port = await freePort();
    // The metadata address must lie inside the guest's network for QEMU to forward it.
    const url = `http://${METADATA_USER_NET.host}:${port}`;
    const expected = await bundleOf(ctx, fdeToml(url, USER_DATA_RESOURCE));
    // The same configuration with one more setting: another hash, which the policy does not name.
    const unexpected = await bundleOf(
      ctx,
      fdeToml(url, USER_DATA_RESOURCE),
      "[boot]\nfailure_pause_secs = 3\n",
    );
    ctx.check(expected.sha384 !== unexpected.sha384, "the two bundles have the same hash");
    const disk = await ctx.convert({ fde: fdeToml(url, INITRD_RESOURCE), rootfsKey: null });

    const world = await AliyunWorld.start({ material: makeMaterial(), secrets: {}, userData: expected.text });
    const broker = await startBroker({
      port,
      allowTees: ["tpm"],
      policy: {
        default: "deny",
        rules: [
          { resource: USER_DATA_RESOURCE, aael: { [AAEL_KEY]: [expected.sha384] }, effect: "allow" },
          { resource: INITRD_RESOURCE, aael: { [AAEL_KEY]: [] }, effect: "allow" },
        ],
      },
      resources: {
        [INITRD_RESOURCE]: crypto.getRandomValues(new Uint8Array(32)),
        [USER_DATA_RESOURCE]: crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    const imds = [{ ...IMDS, hostPort: world.port("imds") }];
    const boot = (label: string, forwards: typeof imds | undefined) =>
      withSwtpm(join(ctx.outDir, `tpm-${label}`), join(ctx.outDir, `swtpm-${label}.sock`), (tpm) =>
        ctx.boot(disk, {
          label,
          quick: true,
          network: true,
          guestForwards: forwards,
          userNet: METADATA_USER_NET.options,
          extraQemuArgs: tpm.qemuArgs,
        }),
      );
    const served = (from: number) => broker.resourceLog.slice(from).map((r) => `${r.path} ${r.status}`);
    try {
      // (1) The bundle from user data, measured, and the broker's policy sees its hash.
      let mark = broker.resourceLog.length;
      const withUserData = await boot("user-data", imds);
      ctx.expectReported(withUserData);
      ctx.check(
        new RegExp(
          `using the configuration bundle from .*sha384 ${expected.sha384}.*measured into .*PCR 23`,
        ).test(withUserData.serial),
        "the stage did not say it uses the user-data bundle measured into PCR 23",
        withUserData,
      );
      ctx.check(
        world.requests.some(
          (r) => r.service === "imds" && r.action === "GET /latest/user-data" && r.status === 200,
        ),
        "the guest never read its user data from the metadata service",
        withUserData,
      );
      ctx.check(
        served(mark).join() === `${USER_DATA_RESOURCE} 200`,
        `the delta key must come from the user-data bundle's resource, the broker served: ${served(mark).join(", ")}`,
        withUserData,
      );

      // (2) No metadata service: the initrd's own configuration, after at most the 1 s probe.
      mark = broker.resourceLog.length;
      const withoutImds = await boot("no-imds", undefined);
      ctx.expectReported(withoutImds);
      ctx.check(
        /no instance metadata service at \S+ \(no answer within 1000 ms\)/.test(withoutImds.serial),
        "the stage did not say that there is no metadata service",
        withoutImds,
      );
      ctx.check(
        served(mark).join() === `${INITRD_RESOURCE} 200`,
        `without user data the delta key must come from the initrd's resource, the broker served: ${served(mark).join(", ")}`,
        withoutImds,
      );

      // (3) A bundle whose hash the policy does not name: measured and used, but no key.
      world.setUserData(unexpected.text);
      mark = broker.resourceLog.length;
      const refused = await boot("unexpected-bundle", imds);
      ctx.expectStopped(
        refused,
        /delta-userdata[\s\S]*(PolicyDeny|policy denied)/i,
        "the broker's policy denial",
      );
      ctx.check(
        served(mark).every((r) => r.endsWith(" 401") || r.endsWith(" 403")) && served(mark).length > 0,
        `the unexpected bundle must get no key, the broker answered: ${served(mark).join(", ")}`,
        refused,
      );
    } finally {
      await broker.stop();
      world.stop();
    }
  },
});
