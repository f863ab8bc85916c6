// Drive execd-bridge with the official OpenSandbox JS SDK (@alibaba-group/opensandbox), unchanged,
// through its public API only: ConnectionConfig + DefaultAdapterFactory.createExecdStack, which is
// what Sandbox.connect() uses once the lifecycle server has handed out the execd endpoint.
// Started by run.py with EXECD_URL, EXECD_TOKEN, EXECD_WORKDIR and NODE_PATH. Prints TAP.
import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";

const { EXECD_URL, EXECD_TOKEN, EXECD_WORKDIR, NODE_PATH } = process.env;
if (!EXECD_URL || !EXECD_TOKEN || !EXECD_WORKDIR || !NODE_PATH) {
  console.error("EXECD_URL, EXECD_TOKEN, EXECD_WORKDIR and NODE_PATH must be set (run via run.py)");
  process.exit(2);
}

// ESM ignores NODE_PATH: resolve the SDK's ESM entry from its package.json there.
const pkgDir = path.join(NODE_PATH.split(path.delimiter)[0], "@alibaba-group", "opensandbox");
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
const sdk = await import(pathToFileURL(path.join(pkgDir, pkg.exports["."].import)).href);
const { ConnectionConfig, DefaultAdapterFactory } = sdk;

const config = new ConnectionConfig({ requestTimeoutSeconds: 30 }).withTransportIfMissing();
const { commands, files, health, metrics } = new DefaultAdapterFactory().createExecdStack({
  connectionConfig: config,
  execdBaseUrl: EXECD_URL,
  endpointHeaders: { "X-EXECD-ACCESS-TOKEN": EXECD_TOKEN },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const W = EXECD_WORKDIR;
const stdoutOf = (ex) => ex.logs.stdout.map((m) => m.text).join("");
const stderrOf = (ex) => ex.logs.stderr.map((m) => m.text).join("");

async function poll(fn, timeoutMs = 15000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await sleep(intervalMs);
  }
}

function describe(err) {
  const parts = [String(err?.stack ?? err)];
  for (const k of ["statusCode", "requestId", "rawBody", "error"]) {
    if (err && err[k] !== undefined) parts.push(`${k}: ${JSON.stringify(err[k])}`);
  }
  return parts.join("\n");
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

// ---------------------------------------------------------------- health / metrics
test("health.ping", async () => {
  assert.equal(await health.ping(), true);
});

test("metrics.getMetrics", async () => {
  const m = await metrics.getMetrics();
  assert.ok(Number.isInteger(m.cpuCount) && m.cpuCount > 0, `cpuCount ${m.cpuCount}`);
  assert.ok(m.cpuUsedPercentage >= 0 && m.cpuUsedPercentage <= 100, `cpu% ${m.cpuUsedPercentage}`);
  assert.ok(m.memoryTotalMiB > 0, `memTotal ${m.memoryTotalMiB}`);
  assert.ok(m.memoryUsedMiB >= 0 && m.memoryUsedMiB <= m.memoryTotalMiB, `memUsed ${m.memoryUsedMiB}`);
  assert.ok(Math.abs(Date.now() - m.timestamp) < 120000, `timestamp ${m.timestamp}`);
});

// ---------------------------------------------------------------- commands
test("commands.run foreground: stdout, exit code 0", async () => {
  const seen = [];
  const ex = await commands.run("echo hello", {}, { onStdout: (m) => seen.push(m.text) });
  assert.ok(ex.id, "execution id from init event");
  assert.equal(stdoutOf(ex).trim(), "hello");
  assert.equal(seen.join("").trim(), "hello");
  assert.equal(ex.error, undefined);
  assert.equal(ex.exitCode, 0);
  assert.ok(ex.complete, "execution_complete event");
});

test("commands.run foreground: stderr, non-zero exit", async () => {
  const ex = await commands.run("echo oops >&2; exit 3");
  assert.equal(stderrOf(ex).trim(), "oops");
  assert.ok(ex.error, "error event for non-zero exit");
  assert.equal(ex.exitCode, 3);
});

test("commands.run: workingDirectory and envs", async () => {
  const ex = await commands.run('pwd; echo "$GREETING"', {
    workingDirectory: W,
    envs: { GREETING: "hi there" },
  });
  // One stdout event per line, without its terminator (README "Run a command").
  assert.deepEqual(ex.logs.stdout.map((m) => m.text), [W, "hi there"]);
  assert.equal(ex.exitCode, 0);
});

test("commands.run: timeoutSeconds stops a long command", async () => {
  const t0 = Date.now();
  const ex = await commands.run("sleep 30", { timeoutSeconds: 1 });
  assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms`);
  assert.notEqual(ex.exitCode, 0);
});

test("commands.run background + getCommandStatus + getBackgroundCommandLogs", async () => {
  const t0 = Date.now();
  const ex = await commands.run("echo one; sleep 0.3; echo two; exit 4", { background: true });
  assert.ok(Date.now() - t0 < 10000, "background run returns quickly");
  assert.ok(ex.id, "background id");
  const st0 = await commands.getCommandStatus(ex.id);
  assert.equal(st0.id, ex.id);
  assert.equal(typeof st0.running, "boolean");
  const st = await poll(async () => {
    const s = await commands.getCommandStatus(ex.id);
    return s.running ? null : s;
  });
  assert.ok(st, "command finished");
  assert.equal(st.running, false);
  assert.equal(st.exitCode, 4);
  assert.ok(st.startedAt instanceof Date && !isNaN(st.startedAt), `startedAt ${st.startedAt}`);
  assert.ok(st.finishedAt instanceof Date && !isNaN(st.finishedAt), `finishedAt ${st.finishedAt}`);
  assert.ok(st.finishedAt >= st.startedAt);
  assert.match(st.content ?? "", /echo one/);

  const logs = await commands.getBackgroundCommandLogs(ex.id);
  assert.equal(logs.content, "one\ntwo\n");
  assert.equal(typeof logs.cursor, "number");
  assert.equal(logs.cursor, Buffer.byteLength("one\ntwo\n"));
  const tail = await commands.getBackgroundCommandLogs(ex.id, logs.cursor);
  assert.equal(tail.content, "");
  assert.equal(tail.cursor, logs.cursor);
  const part = await commands.getBackgroundCommandLogs(ex.id, 4);
  assert.equal(part.content, "two\n");
});

test("commands.interrupt a running background command", async () => {
  const ex = await commands.run("sleep 30", { background: true });
  assert.ok(ex.id);
  assert.equal((await commands.getCommandStatus(ex.id)).running, true);
  await commands.interrupt(ex.id);
  const st = await poll(async () => {
    const s = await commands.getCommandStatus(ex.id);
    return s.running ? null : s;
  });
  assert.ok(st, "stopped after interrupt");
  assert.notEqual(st.exitCode, 0);
});

test("commands.interrupt a running foreground command (by init id)", async () => {
  let id;
  const t0 = Date.now();
  const done = commands.run("sleep 30", {}, { onInit: (m) => { id = m.id; } });
  await poll(async () => id, 5000, 20);
  assert.ok(id, "init id seen");
  await sleep(200);
  await commands.interrupt(id);
  const ex = await done;
  assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms`);
  assert.notEqual(ex.exitCode, 0);
});

test("commands.getCommandStatus unknown id rejects", async () => {
  await assert.rejects(commands.getCommandStatus("no-such-command"));
});

test("commands sessions: createSession, runInSession keeps state, deleteSession", async () => {
  const sid = await commands.createSession({ workingDirectory: W });
  assert.equal(typeof sid, "string");
  assert.ok(sid.length > 0);
  const a = await commands.runInSession(sid, "export FOO=bar; pwd");
  assert.equal(stdoutOf(a).trim(), W);
  const b = await commands.runInSession(sid, 'echo "$FOO"');
  assert.equal(stdoutOf(b).trim(), "bar");
  const c = await commands.runInSession(sid, "pwd", { workingDirectory: "/" });
  assert.equal(stdoutOf(c).trim(), "/");
  await commands.deleteSession(sid);
  await assert.rejects(commands.runInSession(sid, "true"));
});

// ---------------------------------------------------------------- files
test("files.writeFiles + readFile/readBytes round-trip", async () => {
  const bin = new Uint8Array(256).map((_, i) => i);
  await files.writeFiles([
    { path: `${W}/hello.txt`, data: "hello world\n", mode: 640 },
    { path: `${W}/bin.dat`, data: bin },
  ]);
  assert.equal(await files.readFile(`${W}/hello.txt`), "hello world\n");
  assert.deepEqual(Buffer.from(await files.readBytes(`${W}/bin.dat`)), Buffer.from(bin));
  assert.equal(fs.readFileSync(`${W}/hello.txt`, "utf8"), "hello world\n");
  assert.equal(fs.statSync(`${W}/hello.txt`).mode & 0o777, 0o640);
});

test("files.readFile with range", async () => {
  assert.equal(await files.readFile(`${W}/hello.txt`, { range: "bytes=6-10" }), "world");
});

test("files.readBytesStream", async () => {
  const chunks = [];
  for await (const c of files.readBytesStream(`${W}/bin.dat`)) chunks.push(Buffer.from(c));
  assert.equal(Buffer.concat(chunks).length, 256);
});

test("files.writeFiles large streamed upload", async () => {
  const size = 3 * 1024 * 1024 + 17;
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i++) big[i] = (i * 31) & 0xff;
  async function* gen() {
    for (let off = 0; off < size; off += 65536) yield new Uint8Array(big.subarray(off, off + 65536));
  }
  await files.writeFiles([{ path: `${W}/big.bin`, data: gen() }]);
  const back = Buffer.from(await files.readBytes(`${W}/big.bin`));
  assert.equal(back.length, size);
  assert.ok(back.equals(big), "big file round-trip");
});

test("files.getFileInfo", async () => {
  const info = await files.getFileInfo([`${W}/hello.txt`, W]);
  const f = info[`${W}/hello.txt`];
  assert.ok(f, `keys: ${Object.keys(info)}`);
  assert.equal(f.path, `${W}/hello.txt`);
  assert.equal(f.type, "file");
  assert.equal(f.size, 12);
  assert.equal(f.mode, 640);
  assert.equal(typeof f.owner, "string");
  assert.equal(typeof f.group, "string");
  assert.ok(f.modifiedAt instanceof Date && !isNaN(f.modifiedAt), `modifiedAt ${f.modifiedAt}`);
  assert.ok(f.createdAt instanceof Date && !isNaN(f.createdAt), `createdAt ${f.createdAt}`);
  assert.ok(Math.abs(f.modifiedAt.getTime() - fs.statSync(`${W}/hello.txt`).mtimeMs) < 1000);
  assert.equal(info[W].type, "directory");
});

test("files.getFileInfo missing path rejects", async () => {
  await assert.rejects(files.getFileInfo([`${W}/does-not-exist`]));
});

test("files.createDirectories + listDirectory", async () => {
  await files.createDirectories([{ path: `${W}/d1/d2`, mode: 750 }]);
  assert.ok(fs.statSync(`${W}/d1/d2`).isDirectory());
  assert.equal(fs.statSync(`${W}/d1/d2`).mode & 0o777, 0o750);
  await files.writeFiles([{ path: `${W}/d1/d2/deep.txt`, data: "deep" }]);
  const top = await files.listDirectory({ path: W });
  const names = top.map((e) => e.path);
  assert.ok(names.includes(`${W}/hello.txt`), JSON.stringify(names));
  assert.ok(names.includes(`${W}/d1`), JSON.stringify(names));
  const all = await files.listDirectory({ path: `${W}/d1`, depth: 3 });
  assert.ok(all.some((e) => e.path === `${W}/d1/d2/deep.txt`), JSON.stringify(all.map((e) => e.path)));
});

test("files.search", async () => {
  const hits = await files.search({ path: W, pattern: "*.txt" });
  const paths = hits.map((h) => h.path).sort();
  assert.ok(paths.includes(`${W}/hello.txt`), JSON.stringify(paths));
  assert.ok(paths.includes(`${W}/d1/d2/deep.txt`), JSON.stringify(paths));
  assert.ok(!paths.includes(`${W}/bin.dat`), JSON.stringify(paths));
  const h = hits.find((x) => x.path === `${W}/hello.txt`);
  assert.equal(h.size, 12);
  assert.equal(h.type, "file");
});

test("files.moveFiles", async () => {
  await files.writeFiles([{ path: `${W}/mv-src.txt`, data: "move me" }]);
  await files.moveFiles([{ src: `${W}/mv-src.txt`, dest: `${W}/d1/mv-dest.txt` }]);
  assert.equal(fs.existsSync(`${W}/mv-src.txt`), false);
  assert.equal(await files.readFile(`${W}/d1/mv-dest.txt`), "move me");
});

test("files.replaceContents + replaceContentsDetailed", async () => {
  await files.writeFiles([{ path: `${W}/rep.txt`, data: "a-b-a-c-a" }]);
  await files.replaceContents([{ path: `${W}/rep.txt`, oldContent: "a", newContent: "xy" }]);
  assert.equal(await files.readFile(`${W}/rep.txt`), "xy-b-xy-c-xy");
  const res = await files.replaceContentsDetailed([
    { path: `${W}/rep.txt`, oldContent: "xy", newContent: "z" },
  ]);
  assert.equal(res.length, 1);
  assert.equal(res[0].path, `${W}/rep.txt`);
  assert.equal(res[0].replacedCount, 3);
  assert.equal(await files.readFile(`${W}/rep.txt`), "z-b-z-c-z");
});

test("files.setPermissions", async () => {
  await files.setPermissions([{ path: `${W}/rep.txt`, mode: 600 }]);
  assert.equal(fs.statSync(`${W}/rep.txt`).mode & 0o777, 0o600);
  const info = await files.getFileInfo([`${W}/rep.txt`]);
  assert.equal(info[`${W}/rep.txt`].mode, 600);
});

test("files.deleteFiles", async () => {
  await files.deleteFiles([`${W}/rep.txt`, `${W}/bin.dat`]);
  assert.equal(fs.existsSync(`${W}/rep.txt`), false);
  assert.equal(fs.existsSync(`${W}/bin.dat`), false);
  await assert.rejects(files.readFile(`${W}/rep.txt`));
});

test("files.deleteDirectories", async () => {
  await files.deleteDirectories([`${W}/d1`]);
  assert.equal(fs.existsSync(`${W}/d1`), false);
});

test("files: non-ASCII and space in path round-trip", async () => {
  const p = `${W}/dir with space/ünï cødé #1.txt`;
  await files.createDirectories([{ path: `${W}/dir with space` }]);
  await files.writeFiles([{ path: p, data: "ünïcødé ✓" }]);
  assert.equal(await files.readFile(p), "ünïcødé ✓");
  const info = await files.getFileInfo([p]);
  assert.equal(info[p].size, Buffer.byteLength("ünïcødé ✓"));
});

// ---------------------------------------------------------------- run
console.log("TAP version 13");
console.log(`1..${tests.length}`);
let failed = 0;
let n = 0;
for (const t of tests) {
  n++;
  try {
    await t.fn();
    console.log(`ok ${n} - ${t.name}`);
  } catch (err) {
    failed++;
    console.log(`not ok ${n} - ${t.name}`);
    for (const line of describe(err).split("\n")) console.log(`  # ${line}`);
  }
}
await config.closeTransport();
console.log(`# ${tests.length - failed}/${tests.length} passed`);
process.exit(failed ? 1 : 0);
