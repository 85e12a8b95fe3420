import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Broker, DENY_ALL, startBroker } from "../kbs/broker.ts";
import { freePort } from "../lib/net.ts";
import { defineScenario, type ScenarioContext } from "../lib/scenario.ts";

// rootfs and delta keys from the test key broker over plain HTTP (the guest reaches the host's
// loopback as 10.0.2.2), with sample evidence: (1) both keys, one attestation per boot; (2) the
// broker stays down until the agent has been refused for 30 s: it retries and the boot succeeds;
// (3) the broker's policy denies: the boot stops with the broker's reason on the console.

const ROOTFS_KEY = "kbs-vm-rootfs-key";
const RESOURCES = () => ({
  "default/key/rootfs": new TextEncoder().encode(ROOTFS_KEY),
  "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
});

export function kbsFdeToml(url: string, extra = ""): string {
  // The two tables use upstream's and the documented field names respectively.
  return [
    "[rootfs]",
    'delta_location = "disk"',
    'delta_backend = "dm-snapshot"',
    "",
    "[rootfs.encrypt.kbs]",
    `kbs_url = "${url}"`,
    'key_uri = "kbs:///default/key/rootfs"',
    'tee = "sample"',
    extra,
    "[delta]",
    "integrity = false",
    "",
    "[delta.encrypt.kbs]",
    `url = "${url}"`,
    'resource_path = "default/key/delta"',
    'tee = "sample"',
    extra,
  ].join("\n");
}

/** The serial log of the boot labelled `label` as it is being written. */
function liveSerial(ctx: ScenarioContext, label: string): string {
  const file = readdirSync(ctx.outDir).find((f) => f.startsWith("serial-") && f.endsWith(`-${label}.log`));
  return file && existsSync(join(ctx.outDir, file)) ? readFileSync(join(ctx.outDir, file), "latin1") : "";
}

export default defineScenario({
  description: "kbs over HTTP: both keys with one attestation, broker down for 30 s, policy denial",
  timeoutSec: 2400,
  async run(ctx) {
    const port = await freePort();
    const disk = await ctx.convert({ fde: kbsFdeToml(`http://10.0.2.2:${port}`), rootfsKey: ROOTFS_KEY });
    // Held in an object: the late-start task below replaces it while a boot runs.
    const live: { broker?: Broker } = {};
    const stopBroker = async () => {
      await live.broker?.stop();
      live.broker = undefined;
    };
    try {
      live.broker = await startBroker({ port, resources: RESOURCES() });
      const ok = await ctx.boot(disk, { label: "kbs-up", quick: true, network: true });
      ctx.expectReported(ok);
      ctx.check(
        live.broker.stats.attestations === 1 &&
          live.broker.stats.auth === 1 &&
          live.broker.stats.resource === 2,
        `one attestation and two resource requests per boot expected, broker saw ${JSON.stringify(live.broker.stats)}`,
        ok,
      );
      await stopBroker();

      // Down until the agent has been refused for 30 s (so also for at least the boot's first
      // 30 s): what the retry defaults must survive. Times are taken from the console as it is
      // written, since the harness may wait for another VM before this one starts.
      let started: number | undefined;
      let firstRetry: number | undefined;
      const late = (async () => {
        for (;;) {
          await Bun.sleep(1000);
          const serial = liveSerial(ctx, "kbs-late");
          if (serial && started === undefined) started = Date.now();
          if (firstRetry === undefined && /retrying in/.test(serial)) firstRetry = Date.now();
          if (firstRetry !== undefined && Date.now() - firstRetry >= 30_000) break;
          if (started !== undefined && Date.now() - started >= 300_000) break;
        }
        const since = (t?: number) => (t === undefined ? "-" : ((Date.now() - t) / 1000).toFixed(0));
        ctx.log(
          `starting the broker ${since(started)} s into the boot, ${since(firstRetry)} s after the agent's first retry`,
        );
        live.broker = await startBroker({ port, resources: RESOURCES() });
      })();
      const lateBoot = await ctx.boot(disk, {
        label: "kbs-late",
        quick: true,
        network: true,
      });
      await late;
      ctx.expectReported(lateBoot);
      ctx.check(
        firstRetry !== undefined,
        "the agent should have retried (for 30 s) while the broker was down",
        lateBoot,
      );
      ctx.check(
        /could not be completed/.test(lateBoot.serial),
        "no connection-failure message on the console",
        lateBoot,
      );
      await stopBroker();

      live.broker = await startBroker({ port, resources: RESOURCES(), policy: DENY_ALL });
      const denied = await ctx.boot(disk, {
        label: "kbs-deny",
        quick: true,
        network: true,
      });
      ctx.expectStopped(
        denied,
        /HTTP 401 PolicyDeny: Resource policy denied access to default\/key\/rootfs/,
        "the broker's policy denial",
      );
      ctx.check(
        live.broker.stats.resource === 1,
        `a policy denial must not be retried (resource requests: ${live.broker.stats.resource})`,
        denied,
      );
    } finally {
      await stopBroker();
    }
  },
});
