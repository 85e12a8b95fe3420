/** Shared setup for the aliyun tests: fresh credentials, an OIDC issuer and the test servers. */

import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Issuer, makeIssuer as makeOidcIssuer } from "../../../vm-test/aliyun/issuer.ts";
import { type Material, makeMaterial } from "../../../vm-test/aliyun/material.ts";
import { AliyunWorld, type WorldOptions } from "../../../vm-test/aliyun/servers.ts";
import { KeyProviderError } from "../../src/errors.ts";
import type { RetryPolicy } from "../../src/net/retry.ts";

export type { Issuer };

export const OIDC_PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/TestOidcIdp";
export const ROLE_ARN = "acs:ram::1234567890:role/testoidc";
export const ISSUER = "https://oidc.test.example";
export const AUDIENCE = "cryptpilot-fde-test";
export const ECS_ROLE = "EcsKmsRole";

/** Key generation and server start; generous because other jobs may load the CPU. */
export const SETUP_TIMEOUT_MS = 60_000;

/** Small delays so fault tests stay fast; the retry logic is the same as the default. */
export const FAST_RETRY: RetryPolicy = {
  attempts: 3,
  baseDelayMs: 20,
  maxDelayMs: 40,
  requestTimeoutMs: 1500,
  totalTimeoutMs: 30_000,
};

/** The issuer the test STS trusts for OIDC_PROVIDER_ARN. */
export function makeIssuer(): Promise<Issuer> {
  return makeOidcIssuer(ISSUER, AUDIENCE);
}

let material: Material | undefined;

/** Generated once per test process: RSA key generation costs about a second. */
export function testMaterial(): Material {
  material ??= makeMaterial();
  return material;
}

export async function startWorld(issuer: Issuer, extra: Partial<WorldOptions> = {}): Promise<AliyunWorld> {
  return AliyunWorld.start({
    material: testMaterial(),
    secrets: {
      "disk-key": Buffer.from("rootfs passphrase").toString("base64"),
      "oidc-key": "delta passphrase",
    },
    forbiddenSecrets: ["other-team-key"],
    oidcProvider: { arn: OIDC_PROVIDER_ARN, issuer: ISSUER, clientIds: [AUDIENCE], jwks: [issuer.jwk] },
    roles: { [ROLE_ARN]: OIDC_PROVIDER_ARN },
    ecsRoles: [ECS_ROLE],
    slowMs: 3000,
    ...extra,
  });
}

/** What `useWorld` sets up; the fields are filled in by its beforeAll. */
export interface TestEnv {
  issuer: Issuer;
  world: AliyunWorld;
  /** A fresh temporary directory (config dir of the test), removed afterwards. */
  dir: string;
}

/** Registers the file's setup (issuer, servers, temp dir) and teardown; use the fields in tests. */
export function useWorld(extra: Partial<WorldOptions> = {}): TestEnv {
  const env = {} as TestEnv;
  beforeAll(async () => {
    env.issuer = await makeIssuer();
    env.world = await startWorld(env.issuer, extra);
    env.dir = mkdtempSync(join(tmpdir(), "aliyun-test-"));
  }, SETUP_TIMEOUT_MS);
  afterAll(() => {
    env.world?.stop();
    if (env.dir) rmSync(env.dir, { recursive: true, force: true });
  });
  return env;
}

/** The KeyProviderError a provider's getKey() rejects with (fails the test if it resolves). */
export async function keyFailure(provider: { getKey(): Promise<unknown> }): Promise<KeyProviderError> {
  const err = await provider.getKey().then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(KeyProviderError);
  return err as KeyProviderError;
}

/** Runs `fn` against a separately configured set of servers, stopped afterwards. */
export async function withWorld<T>(
  extra: Partial<WorldOptions>,
  fn: (world: AliyunWorld) => Promise<T>,
): Promise<T> {
  const world = await startWorld(await makeIssuer(), extra);
  try {
    return await fn(world);
  } finally {
    world.stop();
  }
}
