/**
 * Cost of getting the boot keys from a key broker with remote attestation (RCAR: auth, attest,
 * resource, JWE decryption) against the test broker on loopback, next to a plain GET to the same
 * server: the part above the baseline is the protocol and its cryptography, not the network.
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { clearKbsSessions, getKbsResource, type KbsClientConfig } from "../agent/src/kbs/client.ts";
import { KBS_RETRY } from "../agent/src/net/retry.ts";
import { hasSwtpm, startSwtpm } from "../agent/testkit/swtpm.ts";
import { type Broker, startBroker } from "../vm-test/kbs/broker.ts";
import { type BenchContext, type Benchmark, type Measurement, median } from "./lib.ts";

/** TPM quotes are slow (swtpm signs, the broker runs tpm2_checkquote): fewer runs. */
const TPM_RUNS = 5;

/**
 * A fresh-session handshake with TPM evidence from swtpm (quotes of PCRs 0-23 over the runtime
 * data) that the broker checks with tpm2_checkquote, next to the same handshake with sample
 * evidence: the difference is what a TPM guest pays for its evidence.
 */
async function tpmHandshake(ctx: BenchContext, broker: Broker, sampleMs: number): Promise<Measurement> {
  const tpm = await startSwtpm();
  try {
    const sys = join(ctx.tmp, "sys");
    mkdirSync(sys, { recursive: true });
    const cfg: KbsClientConfig = {
      url: broker.url,
      tee: "tpm",
      retry: KBS_RETRY,
      attestation: {
        env: {},
        paths: { tsmRoot: join(ctx.tmp, "no-tsm"), sysRoot: sys },
        tpm: { tcti: tpm.tcti, eventLogPath: join(sys, "no-event-log") },
      },
    };
    const times: number[] = [];
    for (let i = -1; i < TPM_RUNS; i++) {
      clearKbsSessions();
      const t = performance.now();
      await getKbsResource(cfg, "default/key/rootfs");
      if (i >= 0) times.push(performance.now() - t);
    }
    return {
      name: `one key, fresh session, TPM evidence (median of ${TPM_RUNS})`,
      value: median(times),
      unit: "ms",
      baseline: { name: "same with sample evidence", value: sampleMs },
      note: "swtpm over TCP quotes the runtime-data digest (SHA-1 and SHA-256 banks); the broker verifies each quote with tpm2_checkquote, as the VM scenario kbs-https does",
    };
  } finally {
    await tpm.stop();
  }
}

const benchmark: Benchmark = {
  title: "KBS key retrieval (RCAR handshake)",
  description:
    "In-process client against `vm-test/kbs` on 127.0.0.1 with sample evidence (no TEE hardware time), and once with TPM evidence from swtpm. Baseline: a plain HTTP GET to the same server; for round trips the two GETs an unauthenticated key server would need for rootfs + delta; for TPM evidence the same handshake with sample evidence.",
  async run(ctx) {
    const broker = await startBroker({
      resources: {
        "default/key/rootfs": crypto.getRandomValues(new Uint8Array(32)),
        "default/key/delta": crypto.getRandomValues(new Uint8Array(32)),
      },
    });
    try {
      const cfg: KbsClientConfig = { url: broker.url, tee: "sample", retry: KBS_RETRY };
      const plain: number[] = [];
      const handshake: number[] = [];
      const boot: number[] = [];
      let requests = 0;
      cfg.onRequest = () => requests++;
      ctx.log(`timing ${ctx.runs} runs each`);
      for (let i = -2; i < ctx.runs; i++) {
        let t = performance.now();
        await (await fetch(`${broker.url}/healthz`)).text();
        const plainMs = performance.now() - t;

        clearKbsSessions();
        t = performance.now();
        await getKbsResource(cfg, "default/key/rootfs");
        const handshakeMs = performance.now() - t;

        clearKbsSessions();
        requests = 0;
        t = performance.now();
        await Promise.all([
          getKbsResource(cfg, "default/key/rootfs"),
          getKbsResource(cfg, "default/key/delta"),
        ]);
        const bootMs = performance.now() - t;
        if (i >= 0) {
          plain.push(plainMs);
          handshake.push(handshakeMs);
          boot.push(bootMs);
        }
      }
      const baseline = { name: "plain GET", value: median(plain) };
      const tpm: Measurement[] = [];
      if (hasSwtpm) tpm.push(await tpmHandshake(ctx, broker, median(handshake)));
      else ctx.log("swtpm or tpm2-tools missing: no TPM evidence measurement");
      return [
        {
          name: `one key, fresh session (median of ${ctx.runs})`,
          value: median(handshake),
          unit: "ms",
          baseline,
        },
        {
          name: `rootfs + delta keys, one boot (median of ${ctx.runs})`,
          value: median(boot),
          unit: "ms",
          baseline,
          note: "both keys requested concurrently; the second reuses the first's attestation",
        },
        {
          name: "HTTP round trips per boot",
          value: requests,
          unit: "requests",
          baseline: { name: "one GET per key", value: 2 },
          note: "auth + attest once, then one resource GET per key (without session reuse: 6)",
        },
        ...tpm,
      ];
    } finally {
      await broker.stop();
    }
  },
};

export default benchmark;
