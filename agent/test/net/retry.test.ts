/**
 * net/retry.ts: the one retry policy, classification and loop of the KBS and Alibaba Cloud
 * clients, and the configuration defaults derived from it.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfigTexts } from "../../src/config/index.ts";
import { classify, HttpFailure, KBS_RETRY, type RetryPolicy, withRetry } from "../../src/net/retry.ts";

const err = (code: string, message = `${code} happened`) => Object.assign(new Error(message), { code });

describe("classify: what is retried, what is final", () => {
  test("expired or not-yet-valid certificates are final and point at the clock", () => {
    for (const code of ["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]) {
      const f = classify(err(code));
      expect([f.kind, f.clock, f.retryable]).toEqual(["certificate", true, false]);
    }
  });

  test("other certificate failures are final and not about the clock", () => {
    for (const code of [
      "DEPTH_ZERO_SELF_SIGNED_CERT",
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      "ERR_TLS_CERT_ALTNAME_INVALID",
    ]) {
      const f = classify(err(code));
      expect([f.kind, f.clock, f.retryable]).toEqual(["certificate", false, false]);
    }
  });

  test("a non-TLS answer is final; resets, refusals, DNS and unknown socket errors are retried", () => {
    expect([classify(err("EPROTO")).kind, classify(err("EPROTO")).retryable]).toEqual(["tls", false]);
    for (const code of ["ECONNRESET", "ECONNREFUSED", "EAI_AGAIN", "ESOMETHINGNEW"]) {
      expect(classify(err(code)).retryable).toBe(true);
    }
    expect(classify(err("ECONNREFUSED")).message).toBe("connection refused (ECONNREFUSED)");
  });
});

const POLICY: RetryPolicy = {
  attempts: 4,
  baseDelayMs: 10,
  maxDelayMs: 20,
  requestTimeoutMs: 1000,
  totalTimeoutMs: 60_000,
};

function hooks(extra: { deadline?: number } = {}) {
  const waits: number[] = [];
  return {
    waits,
    hooks: {
      isOwn: (e: unknown): e is HttpFailure => e instanceof HttpFailure,
      retryable: (e: HttpFailure) => e.retryable,
      describe: (e: HttpFailure) => e.message,
      giveUp: (e: HttpFailure, n: number) => new Error(`gave up after ${n}: ${e.message}`),
      sleep: async (ms: number) => {
        waits.push(ms);
      },
      ...extra,
    },
  };
}

describe("withRetry", () => {
  test("retries a retryable failure until the attempts run out", async () => {
    let calls = 0;
    const h = hooks();
    const run = withRetry(
      POLICY,
      async () => {
        calls++;
        throw classify(err("ECONNRESET"));
      },
      h.hooks,
    );
    await expect(run).rejects.toThrow("gave up after 4: connection reset by the peer");
    expect(calls).toBe(4);
    expect(h.waits.length).toBe(3);
  });

  test("a final failure or a foreign error ends the loop at once", async () => {
    for (const thrown of [classify(err("CERT_HAS_EXPIRED")), new TypeError("bug")]) {
      let calls = 0;
      const run = withRetry(
        POLICY,
        async () => {
          calls++;
          throw thrown;
        },
        hooks().hooks,
      );
      await expect(run).rejects.toBe(thrown);
      expect(calls).toBe(1);
    }
  });

  test("no attempt starts after the deadline, and each gets at most the time left", async () => {
    const timeouts: number[] = [];
    const run = withRetry(
      POLICY,
      async (t) => {
        timeouts.push(t);
        throw classify(err("ETIMEDOUT"));
      },
      hooks({ deadline: Date.now() + 5 }).hooks,
    );
    await expect(run).rejects.toThrow("gave up after 1");
    expect(timeouts.length).toBe(1);
    expect(timeouts[0]!).toBeLessThanOrEqual(5);
  });
});

describe("one policy source", () => {
  test("the kbs provider's configuration defaults are KBS_RETRY", () => {
    const { fde } = parseConfigTexts(
      {
        fde: `[rootfs]\n[delta.encrypt.kbs]\nkbs_url = "https://kbs.example:8080"\nkey_uri = "kbs:///default/cryptpilot/delta"\n`,
      },
      "test",
    );
    const kbs = fde!.delta.encrypt as unknown as Record<string, number>;
    expect(kbs.retryAttempts).toBe(KBS_RETRY.attempts);
    expect(kbs.retryTimeoutMs).toBe(KBS_RETRY.totalTimeoutMs);
    expect(kbs.requestTimeoutMs).toBe(KBS_RETRY.requestTimeoutMs);
  });

  test("net/retry.ts loads nothing but log.ts (config check imports it for the defaults)", () => {
    const source = readFileSync(join(import.meta.dir, "../../src/net/retry.ts"), "utf8");
    const imports = [...source.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    expect(imports).toEqual(["../log.ts"]);
  });
});
