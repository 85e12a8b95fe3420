/**
 * The contract every key provider must meet, as one reusable suite (in the spirit of unstorage's
 * shared driver tests). A provider's test file calls:
 *
 *   describeProviderConformance("kbs", async () => ({
 *     provider: () => create(config, ctx),          // a working provider
 *     failing: () => create(badConfig, ctx),        // one that must fail (server down, bad creds)
 *     expectedKey: bytes,                           // when the test knows the key
 *     secrets: ["client-key-password"],             // must never appear in describe() or errors
 *     cleanup: () => server.stop(),
 *   }));
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KeyProviderError } from "../../src/errors.ts";
import type { KeyProvider } from "../../src/providers/provider.ts";

export interface ConformanceCase {
  provider: () => KeyProvider | Promise<KeyProvider>;
  failing?: () => KeyProvider | Promise<KeyProvider>;
  expectedKey?: Uint8Array;
  secrets?: string[];
  cleanup?: () => unknown;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** Renderings of a key that would show it leaked into a string. */
function keyForms(key: Uint8Array): string[] {
  const forms = [hex(key), Buffer.from(key).toString("base64")];
  const text = new TextDecoder("utf-8", { fatal: false }).decode(key).trim();
  if (text.length >= 4 && !text.includes("\uFFFD")) forms.push(text);
  return forms;
}

/** Capture what is logged (console.*, which the logger uses, and raw stdout/stderr) while `fn` runs. */
async function captureOutput<T>(fn: () => Promise<T>): Promise<{ result: T; output: string }> {
  let output = "";
  const text = (args: unknown[]) => {
    output += `${args.map((a) => (a instanceof Uint8Array ? new TextDecoder().decode(a) : String(a))).join(" ")}\n`;
  };
  const saved = { error: console.error, log: console.log, warn: console.warn, info: console.info };
  const streams = [process.stderr, process.stdout] as const;
  const writes = streams.map((s) => s.write);
  console.error = console.log = console.warn = console.info = (...args: unknown[]) => text(args);
  for (const s of streams) {
    s.write = ((chunk: string | Uint8Array) => {
      text([chunk]);
      return true;
    }) as typeof s.write;
  }
  try {
    return { result: await fn(), output };
  } finally {
    Object.assign(console, saved);
    streams.forEach((s, i) => {
      s.write = writes[i]!;
    });
  }
}

export function describeProviderConformance(
  name: string,
  setup: () => ConformanceCase | Promise<ConformanceCase>,
): void {
  describe(`${name} provider conformance`, () => {
    let c: ConformanceCase;
    beforeAll(async () => {
      c = await setup();
    });
    afterAll(async () => {
      await c?.cleanup?.();
    });

    test("reports its config table name", async () => {
      expect((await c.provider()).name).toBe(name);
    });

    test("getKey returns a non-empty Uint8Array (the expected key when known)", async () => {
      const key = await (await c.provider()).getKey();
      expect(key).toBeInstanceOf(Uint8Array);
      expect(key.length).toBeGreaterThan(0);
      if (c.expectedKey) expect(hex(key)).toBe(hex(c.expectedKey));
    });

    test("describe() is one line naming the provider and holds no key or secret", async () => {
      const provider = await c.provider();
      const text = provider.describe();
      expect(text.length).toBeGreaterThan(0);
      expect(text).not.toContain("\n");
      expect(text).toContain(name);
      const key = await provider.getKey();
      for (const leak of [...keyForms(key), ...(c.secrets ?? [])]) expect(text).not.toContain(leak);
    });

    test("repeated getKey: stable for persistent providers, fresh for temporary ones", async () => {
      const provider = await c.provider();
      const first = await provider.getKey();
      const second = await provider.getKey();
      const again = await (await c.provider()).getKey();
      if (provider.temporary) {
        expect(hex(second)).not.toBe(hex(first));
        expect(hex(again)).not.toBe(hex(first));
      } else {
        expect(hex(second)).toBe(hex(first));
        expect(hex(again)).toBe(hex(first));
      }
    });

    test("concurrent getKey calls both succeed", async () => {
      const provider = await c.provider();
      const [a, b] = await Promise.all([provider.getKey(), provider.getKey()]);
      expect(a.length).toBeGreaterThan(0);
      if (!provider.temporary) expect(hex(a)).toBe(hex(b));
    });

    test("getKey writes neither the key nor a secret to the log", async () => {
      const { result: key, output } = await captureOutput(async () => (await c.provider()).getKey());
      for (const leak of [...keyForms(key), ...(c.secrets ?? [])]) expect(output).not.toContain(leak);
    });

    test("a failing setup rejects with a KeyProviderError naming the provider and no secret", async () => {
      if (!c.failing) {
        // Providers that cannot fail (otp) say so by not giving a failing case.
        expect((await c.provider()).temporary).toBe(true);
        return;
      }
      const provider = await c.failing();
      let caught: unknown;
      try {
        await provider.getKey();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(KeyProviderError);
      const err = caught as KeyProviderError;
      expect(err.provider).toBe(name);
      expect(err.message).toContain(name);
      const text = `${err.message}\n${err.hint ?? ""}\n${String((err.cause as Error | undefined)?.message ?? "")}`;
      for (const leak of c.secrets ?? []) expect(text).not.toContain(leak);
    });
  });
}
