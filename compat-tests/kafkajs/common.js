'use strict'
// Shared by the kafkajs scenarios (compat-tests/test_kafkajs.py runs them):
// argument parsing, the client (kafkajs' log on stderr, so stdout carries
// only the result), polling with deadlines, and the one JSON line of output.
//
// Each scenario is `node <scenario>.js --bootstrap HOST:PORT --prefix NAME
// [--part X]` and prints exactly one JSON line on stdout: what it observed,
// or {"fatal": ...} with exit code 1. The assertions are in the pytest.

const { Kafka, logLevel } = require('kafkajs')

function parseArgs () {
  const args = {}
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad arguments: ${argv.join(' ')}`)
    args[argv[i].slice(2)] = argv[i + 1]
  }
  if (!args.bootstrap) throw new Error('--bootstrap HOST:PORT is required')
  args.prefix = args.prefix || `kjs-${process.pid}`
  args.deadline = Number(args.deadline || 50000)
  return args
}

const LEVEL_NAMES = { [logLevel.ERROR]: 'ERROR', [logLevel.WARN]: 'WARN', [logLevel.INFO]: 'INFO', [logLevel.DEBUG]: 'DEBUG' }

// kafkajs' default logger writes INFO to stdout; this one writes everything to stderr.
const stderrLogCreator = () => ({ namespace, level, log }) => {
  const { message, ...rest } = log
  process.stderr.write(`${new Date().toISOString()} ${LEVEL_NAMES[level] || level} [${namespace}] ${message} ${JSON.stringify(rest)}\n`)
}

function makeKafka (args, clientId, retry = {}) {
  return new Kafka({
    clientId: clientId || 'strom-kafkajs-test',
    brokers: [args.bootstrap],
    logLevel: process.env.KAFKAJS_LOG_LEVEL ? logLevel[process.env.KAFKAJS_LOG_LEVEL] : logLevel.WARN,
    logCreator: stderrLogCreator,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 8, ...retry },
  })
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Polls `fn` (sync or async) until it returns a truthy value; throws after timeoutMs.
async function waitFor (what, fn, timeoutMs = 20000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs
  let lastError
  for (;;) {
    try {
      const value = await fn()
      if (value) return value
      lastError = undefined
    } catch (e) {
      lastError = e
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (lastError ? ` (last error: ${describeError(lastError).message})` : ''))
    }
    await sleep(intervalMs)
  }
}

// A kafkajs error as plain data: its class name, the protocol error's type
// (e.g. TOPIC_ALREADY_EXISTS) and code, and those of nested errors.
function describeError (e) {
  if (!e || typeof e !== 'object') return { message: String(e) }
  const out = { name: e.name, message: e.message }
  if (e.type !== undefined) out.type = e.type
  if (e.code !== undefined) out.code = e.code
  if (e.retriable !== undefined) out.retriable = e.retriable
  if (Array.isArray(e.errors)) out.errors = e.errors.map(describeError)
  if (Array.isArray(e.partitions)) {
    out.partitions = e.partitions.map(p => ({ partition: p.partition, offset: p.offset, error: p.error ? describeError(p.error) : undefined }))
  }
  if (Array.isArray(e.topicErrors)) out.topicErrors = e.topicErrors.map(t => ({ topic: t.topic, type: t.error && t.error.type, code: t.error && t.error.code }))
  if (Array.isArray(e.groups)) out.groups = e.groups.map(g => ({ groupId: g.groupId, errorCode: g.errorCode, error: g.error ? describeError(g.error) : undefined }))
  if (e.cause && e.cause !== e) out.cause = describeError(e.cause)
  return out
}

// Runs the scenario under a global deadline and prints its result (or the
// fatal error) as the one JSON line on stdout. `cleanup` runs either way.
function main (scenario) {
  let args
  try {
    args = parseArgs()
  } catch (e) {
    process.stdout.write(JSON.stringify({ fatal: describeError(e) }) + '\n')
    process.exit(1)
  }
  const cleanups = []
  const state = { args, cleanups, trace: [] }
  const began = Date.now()
  const finish = async (result, code) => {
    clearTimeout(timer)
    for (const fn of cleanups.reverse()) {
      try { await Promise.race([fn(), sleep(5000)]) } catch (e) { /* best effort */ }
    }
    result.seconds = (Date.now() - began) / 1000
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
  }
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ fatal: { message: `scenario exceeded its ${args.deadline} ms deadline`, trace: state.trace.slice(-30) } }) + '\n',
      () => process.exit(1))
  }, args.deadline)
  const step = what => { state.trace.push(`${((Date.now() - began) / 1000).toFixed(2)}s ${what}`) }
  state.step = step
  Promise.resolve()
    .then(() => scenario(args, state))
    .then(result => finish(result, 0), e => finish({ fatal: { ...describeError(e), stack: e && e.stack, trace: state.trace.slice(-30) } }, 1))
}

function bufToStr (b) {
  return b === null || b === undefined ? null : b.toString('utf8')
}

function headersToObj (headers) {
  const out = {}
  for (const [k, v] of Object.entries(headers || {})) {
    out[k] = Array.isArray(v) ? v.map(bufToStr) : bufToStr(v)
  }
  return out
}

module.exports = { makeKafka, waitFor, sleep, describeError, main, bufToStr, headersToObj }
