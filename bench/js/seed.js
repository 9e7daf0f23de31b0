#!/usr/bin/env node
// The seed scenario through unary CreateOrder calls, from another gRPC implementation:
// @grpc/grpc-js on Node.js (not grpcio, not the project's code), loading the API from
// protos/ at run time. Open loop: order i is due at start + i / rate, and its latency
// counts from then. Prices and quantities are made as integers (BigInt) and written as
// the API's decimal strings; no floating-point number holds one.
//
//   node bench/js/seed.js --addr 127.0.0.1:50051 --keys KEY1,KEY2 [--rate 2000]
//        [--duration 60] [--warmup 5] [--procs 2] [--timeout 10] [--tag js] [--seed 1]
//        [--include DIR]   (where google/rpc/status.proto is: googleapis' protos)
//
// --procs N runs N processes (this file, forked), each at rate / N. The result, one JSON
// object on standard output: sent, ok, errors by status code, latency percentiles (ms)
// of the orders due after the warm-up, and the client's own CPU time.
"use strict";

const path = require("path");
const { fork } = require("child_process");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");

function parseArgs(argv) {
  const args = { addr: "127.0.0.1:50051", keys: "", rate: 2000, duration: 60, warmup: 5,
    procs: 1, timeout: 10, tag: "js", seed: 1, child: -1, include: "" };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    if (!(name in args)) throw new Error(`unknown option --${name}`);
    args[name] = typeof args[name] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!args.keys) throw new Error("--keys is required (API keys, comma-separated)");
  return args;
}

// A small seeded generator (mulberry32), so that every run sends the same orders.
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  };
}

// n units of 10^-decimals as a decimal string: (123n, 2) -> "1.23".
function decimal(units, decimals) {
  const scale = 10n ** BigInt(decimals);
  const frac = (units % scale).toString().padStart(decimals, "0");
  return `${units / scale}.${frac}`;
}

// The seed mix (bench/orders.py MIXES["seed"]): 70% limit GTC / 30% market IOC, 0.01-0.5
// BTC (100-5,000 lots of 0.0001), limit prices uniform within +-2,000.00 of 70,000.00.
function seedOrder(next, clientOrderId) {
  const side = next() % 2 === 0 ? "SIDE_BUY" : "SIDE_SELL";
  const lots = 100n + BigInt(next() % 4901);
  const order = { instrument: "BTC-USD", side, quantity: decimal(lots, 4),
    client_order_id: clientOrderId };
  if (next() % 10 < 7) {
    const ticks = 7000000n - 200000n + BigInt(next() % 400001);
    return { ...order, type: "ORDER_TYPE_LIMIT", time_in_force: "TIME_IN_FORCE_GTC",
      price: decimal(ticks, 2) };
  }
  return { ...order, type: "ORDER_TYPE_MARKET", time_in_force: "TIME_IN_FORCE_IOC" };
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function runOne(args) {
  const definition = protoLoader.loadSync("exchange/order/v1/order.proto", {
    includeDirs: [PROTOS, ...(args.include ? [args.include] : [])], keepCase: true,
    enums: String, defaults: false });
  const api = grpc.loadPackageDefinition(definition).exchange.order.v1;
  const client = new api.OrderService(args.addr, grpc.credentials.createInsecure(),
    { "grpc.keepalive_time_ms": 20000 });
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10000,
    (err) => (err ? reject(err) : resolve())));
  const keys = args.keys.split(",");
  const next = generator(args.seed * 7919 + Math.max(0, args.child));
  const total = Math.round(args.rate * args.duration);
  const latencies = [];
  const errors = {};
  let ok = 0;
  let answered = 0;
  const cpuBefore = process.cpuUsage();
  const start = Number(process.hrtime.bigint() / 1000n) / 1000; // ms, monotonic
  const nowMs = () => Number(process.hrtime.bigint() / 1000n) / 1000;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  let i = 0;
  const send = () => {
    const now = nowMs();
    while (i < total && start + (i * 1000) / args.rate <= now) {
      const due = start + (i * 1000) / args.rate;
      const request = seedOrder(next, `${args.tag}-${Math.max(0, args.child)}-${i}`);
      const metadata = new grpc.Metadata();
      metadata.set("x-api-key", keys[i % keys.length]);
      const counted = due - start >= args.warmup * 1000;
      client.CreateOrder(request, metadata, { deadline: Date.now() + args.timeout * 1000 },
        (err) => {
          answered += 1;
          if (err) {
            const code = grpc.status[err.code] || String(err.code);
            errors[code] = (errors[code] || 0) + 1;
          } else {
            ok += 1;
            if (counted) latencies.push(nowMs() - due);
          }
          if (answered === total) done();
        });
      i += 1;
    }
    if (i < total) setTimeout(send, Math.max(0, start + (i * 1000) / args.rate - nowMs()));
  };
  send();
  await finished;
  const cpu = process.cpuUsage(cpuBefore);
  client.close();
  return { sent: total, ok, errors, latencies_ms: latencies,
    client_cpu_s: (cpu.user + cpu.system) / 1e6, seconds: (nowMs() - start) / 1000 };
}

function summarize(parts, args) {
  const latencies = parts.flatMap((p) => p.latencies_ms).sort((a, b) => a - b);
  const errors = {};
  for (const p of parts) {
    for (const [code, n] of Object.entries(p.errors)) errors[code] = (errors[code] || 0) + n;
  }
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    client: `@grpc/grpc-js ${require("@grpc/grpc-js/package.json").version}, Node.js ${process.version}`,
    addr: args.addr, rate: args.rate, duration_s: args.duration, warmup_s: args.warmup,
    procs: args.procs, timeout_s: args.timeout,
    sent: parts.reduce((s, p) => s + p.sent, 0), ok: parts.reduce((s, p) => s + p.ok, 0),
    errors, error_count: Object.values(errors).reduce((s, n) => s + n, 0),
    latency_ms: { count: latencies.length, p50: round(percentile(latencies, 0.5)),
      p90: round(percentile(latencies, 0.9)), p99: round(percentile(latencies, 0.99)),
      p99_9: round(percentile(latencies, 0.999)), max: round(latencies[latencies.length - 1] ?? null) },
    client_cpu_s: parts.reduce((s, p) => s + p.client_cpu_s, 0),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.child >= 0) { // a forked process: its part, to the parent
    process.send(await runOne(args));
    return;
  }
  let parts;
  if (args.procs <= 1) {
    parts = [await runOne(args)];
  } else {
    parts = await Promise.all(Array.from({ length: args.procs }, (_, k) => new Promise(
      (resolve, reject) => {
        const child = fork(__filename, [...process.argv.slice(2), "--child", String(k),
          "--rate", String(args.rate / args.procs)]);
        child.on("message", resolve);
        child.on("exit", (code) => (code ? reject(new Error(`process ${k}: ${code}`)) : null));
      })));
  }
  process.stdout.write(JSON.stringify(summarize(parts, args)) + "\n");
}

main().catch((err) => { process.stderr.write(`seed.js: ${err.message}\n`); process.exit(2); });
