/**
 * The contract every key provider must meet, as one reusable suite (in the spirit of unstorage's
 * shared driver tests). conformance.test.ts runs it for every registered provider with the cases
 * of fixtures/<type>.ts (listed in fixtures.ts), e.g.:
 *
 *   cases: { "one-shot": async () => ({
 *     provider: () => create(config, ctx),          // a working provider
 *     failing: () => create(badConfig, ctx),        // one that must fail (server down, bad creds)
 *     expectedKey: bytes,                           // when the test knows the key
 *     secrets: ["client-key-password"],             // must never appear in describe() or errors
 *     onDevice: (device, freshKey) => create(config, { ...ctx, device, freshKey }),
 *     cleanup: () => server.stop(),
 *   }) }
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyProviderError } from "../../src/errors.ts";
import type { FreshKey, KeyProvider } from "../../src/providers/provider.ts";

export interface ConformanceCase {
  provider: () => KeyProvider | Promise<KeyProvider>;
  failing?: () => KeyProvider | Promise<KeyProvider>;
  expectedKey?: Uint8Array;
  /** The keyslot the working provider names after getKey (tpm2: its token's), when it names one. */
  expectedKeySlot?: number;
  secrets?: string[];
  /**
   * The working provider's config for the volume at `device`, created with `freshKey`. The suite
   * runs the caller's side of the fresh-key contract on a blank image file: "never" makes up no
   * key; "allowed" hands out a key, the suite luksFormats the file with it and calls afterFormat;
   * "never" then returns that key, for the keyslot it names. Required for providers with
   * afterFormat (they keep their key in the volume).
   */
  onDevice?: (device: string, freshKey: FreshKey) => KeyProvider | Promise<KeyProvider>;
  cleanup?: () => unknown;
}

/** One provider's conformance cases (fixtures/<type>.ts); each case sets up and cleans up its own servers. */
export interface ConformanceFixture {
  /** Why the cases cannot run on this host (a missing tool); the suite skips them, saying so. */
  unavailable?: string;
  cases: Record<string, () => ConformanceCase | Promise<ConformanceCase>>;
}

const hasCryptsetup = Bun.which("cryptsetup") !== null;
const FAST_PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
/** Size of the blank image the format round trip uses: room for a LUKS2 header and keyslots. */
const IMAGE_BYTES = 20 * 1024 * 1024;

/** What the boot code does to a volume it initialises: luksFormat with the key on stdin. */
function luksFormat(file: string, key: Uint8Array): void {
  const args = ["luksFormat", "--type", "luks2", "--batch-mode", ...FAST_PBKDF];
  const r = Bun.spawnSync(
    ["cryptsetup", ...args, "--subsystem", "cryptpilot-initializing", "--key-file", "-", file],
    {
      stdin: Buffer.from(key),
      stderr: "pipe",
    },
  );
  if (r.exitCode !== 0) throw new Error(`luksFormat ${file}: ${r.stderr.toString()}`);
}

/** Whether `key` opens `file` (only keyslot `slot` when given); no device-mapper needed. */
function opens(file: string, key: Uint8Array, slot?: number): boolean {
  const only = slot === undefined ? [] : ["--key-slot", String(slot)];
  const r = Bun.spawnSync(["cryptsetup", "open", "--test-passphrase", ...only, "--key-file", "-", file], {
    stdin: Buffer.from(key),
    stderr: "pipe",
  });
  return r.exitCode === 0;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (err: unknown) => err,
  );
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
  label?: string,
): void {
  describe(`${name} provider conformance${label ? ` (${label})` : ""}`, () => {
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

    test("keySlot, when implemented, names a keyslot (0-31) or nothing after getKey", async () => {
      const provider = await c.provider();
      await provider.getKey();
      const slot = provider.keySlot?.();
      if (c.expectedKeySlot !== undefined) expect(slot).toBe(c.expectedKeySlot);
      else if (slot !== undefined) expect(Number.isInteger(slot) && slot >= 0 && slot < 32).toBe(true);
    });

    test("a provider with afterFormat (key kept in the volume) has a format round-trip case", async () => {
      const provider = await c.provider();
      if (provider.afterFormat) expect(c.onDevice).toBeDefined();
    });

    test.skipIf(!hasCryptsetup)(
      "fresh-key contract: never makes up a key; allowed + luksFormat + afterFormat gives the key back",
      async () => {
        if (!c.onDevice) {
          // Only providers whose key lives elsewhere may skip it (see the test above).
          expect((await c.provider()).afterFormat).toBeUndefined();
          return;
        }
        const dir = mkdtempSync(join(tmpdir(), `conformance-${name}-`));
        try {
          const device = join(dir, "volume.img");
          await Bun.write(device, new Uint8Array(0));
          Bun.spawnSync(["truncate", "-s", String(IMAGE_BYTES), device]);
          const working = await (await c.provider()).getKey();

          // "never" on a volume holding no key: its usual key (kept elsewhere) or a KeyProviderError.
          const never = await c.onDevice(device, "never");
          const blank = await rejection(never.getKey());
          if (blank === undefined) {
            expect(never.temporary || hex(await never.getKey()) === hex(working)).toBe(true);
          } else {
            expect(blank).toBeInstanceOf(KeyProviderError);
            expect((blank as KeyProviderError).provider).toBe(name);
          }
          if (never.afterFormat) {
            // It promised not to format: storing a key now would be a caller's bug made silent.
            expect(await rejection(never.afterFormat(device))).toBeInstanceOf(KeyProviderError);
          }

          const allowed = await c.onDevice(device, "allowed");
          const key = await allowed.getKey();
          expect(key.length).toBeGreaterThan(0);
          luksFormat(device, key);
          await allowed.afterFormat?.(device);
          if (allowed.temporary) return; // re-formatted with a fresh key on every open

          const reopened = await c.onDevice(device, "never");
          const again = await reopened.getKey();
          expect(hex(again)).toBe(hex(key));
          const slot = reopened.keySlot?.();
          expect(opens(device, again, slot)).toBe(true);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
      60_000,
    );
  });
}
