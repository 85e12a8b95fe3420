#!/usr/bin/env bun
import { basename } from "node:path";
import { main } from "./cli/index.ts";
import { cryptArgv } from "./volume/crypt-argv.ts";

const args = process.argv.slice(2);
// Run through a `cryptpilot-crypt` symlink: upstream's data-volume command line (docs/volumes.md).
process.exitCode = await main(basename(process.argv0) === "cryptpilot-crypt" ? cryptArgv(args) : args);
