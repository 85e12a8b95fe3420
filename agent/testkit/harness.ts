/**
 * Small bun:test helpers the tests share: temp configuration directories, what to stop after each
 * test, the error a promise must reject with, and a retry policy that keeps failing cases short.
 */
import { afterAll, afterEach } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RetryPolicy } from "../src/net/retry.ts";

/**
 * A maker of configuration directories for one test file: each call makes a fresh temp directory
 * named after `prefix` holding `files` (name -> text), in its subdirectory `sub` when given (e.g.
 * "volumes"); an afterAll removes them all.
 */
export function configDirMaker(prefix: string, sub?: string): (files: Record<string, string>) => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return (files) => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    const into = sub === undefined ? dir : join(dir, sub);
    mkdirSync(into, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(into, name), text);
    return dir;
  };
}

/**
 * Registers an afterEach that runs `first` (e.g. clearKbsSessions) and then every stop function
 * pushed onto the returned list since the last test, all at once; the list is emptied each time.
 */
export function stopsAfterEach(first?: () => void): (() => unknown)[] {
  const stops: (() => unknown)[] = [];
  afterEach(async () => {
    first?.();
    await Promise.all(stops.splice(0).map((stop) => stop()));
  });
  return stops;
}

/** The error `p` rejects with (typed as `E` for the caller's checks); throws when it resolves. */
export async function rejection<E = Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (err) {
    return err as E;
  }
  throw new Error("resolved but should have failed");
}

/**
 * Retries against a local test server: 3 attempts, 20-50 ms apart, 2 s per request and 10 s in
 * all, so a case that must fail fails within a few seconds while a transient error still clears.
 */
export const FAST_RETRY: RetryPolicy = {
  attempts: 3,
  totalTimeoutMs: 10_000,
  requestTimeoutMs: 2_000,
  baseDelayMs: 20,
  maxDelayMs: 50,
};
