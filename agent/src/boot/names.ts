/** The FDE layout's device names now live in disk/names.ts (the bottom layer); kept for boot/'s imports. */
export * from "../disk/names.ts";
