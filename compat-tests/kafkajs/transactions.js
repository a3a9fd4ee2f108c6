'use strict'
// Transactions:
//  1. visibility: producer T1 commits c1, aborts ab, commits c2 (both
//     partitions); producer T2 opens a transaction (open, partition 0) and
//     T1 then commits c3 behind it. A read_committed consumer
//     (readUncommitted: false) sees c1, c2 and, on partition 0, stops at the
//     open transaction (the LSO) until T2 commits; a read_uncommitted one sees
//     everything, aborted records included. The admin's offsets (ListOffsets
//     READ_COMMITTED) show the LSO while T2 is open.
//  2. consume-transform-produce: a group reads `in` (autoCommit off) and per
//     batch, in one transaction, produces the upper-cased values to `ctp` and
//     commits the group's offsets with sendOffsets; a transaction with
//     sendOffsets that aborts first commits nothing. Afterwards the committed
//     group offsets are the end offsets of `in` and a read_committed reader
//     of `ctp` sees every value exactly once.
// Prints what each consumer saw and the offsets.

const { makeKafka, waitFor, main, bufToStr } = require('./common')

main(async (args, state) => {
  const kafka = makeKafka(args)
  const out = `${args.prefix}-txn-out`
  const input = `${args.prefix}-txn-in`
  const ctp = `${args.prefix}-txn-ctp`
  const admin = kafka.admin()
  await admin.connect()
  state.cleanups.push(() => admin.disconnect())
  await admin.createTopics({ topics: [{ topic: out, numPartitions: 2 }, { topic: input, numPartitions: 2 }, { topic: ctp, numPartitions: 1 }], waitForLeaders: true })
  // Kafka writes the transaction markers after EndTxn has answered, so the
  // LSO a READ_COMMITTED ListOffsets shows may lag the commit for a moment:
  // poll until it is `expected` (the layout below), else keep the last answer.
  const settledOffsets = async (topic, expected) => {
    let last
    try {
      await waitFor(`offsets of ${topic} at ${expected}`, async () => {
        last = await offsetsOf(topic)
        return last.map(o => Number(o.high)).join() === expected.join()
      }, 10000)
    } catch (e) { /* the assertion shows `last` */ }
    return last
  }
  const offsetsOf = async topic => (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition).map(o => ({ partition: o.partition, high: o.high, low: o.low }))

  const txProducer = async id => {
    const p = kafka.producer({ transactionalId: `${args.prefix}-${id}`, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, transactionTimeout: 30000 })
    await p.connect()
    state.cleanups.push(() => p.disconnect())
    return p
  }
  const msgs = (tag, spec) => spec.flatMap(([partition, n]) => Array.from({ length: n }, (_, i) => ({ partition, key: `${tag}-${partition}-${i}`, value: `${tag}-${partition}-${i}` })))

  // 1. visibility
  state.step('T1 c1 / ab / c2')
  const t1 = await txProducer('t1')
  let txn = await t1.transaction()
  await txn.send({ topic: out, messages: msgs('c1', [[0, 3], [1, 2]]) })
  await txn.commit()
  txn = await t1.transaction()
  await txn.send({ topic: out, messages: msgs('ab', [[0, 2], [1, 2]]) })
  await txn.abort()
  txn = await t1.transaction()
  await txn.send({ topic: out, messages: msgs('c2', [[0, 2], [1, 1]]) })
  await txn.commit()
  const offsetsBeforeOpen = await settledOffsets(out, [10, 8])
  state.step('T2 open, T1 c3')
  const t2 = await txProducer('t2')
  const open = await t2.transaction()
  await open.send({ topic: out, messages: msgs('open', [[0, 2]]) })
  txn = await t1.transaction()
  await txn.send({ topic: out, messages: msgs('c3', [[0, 1], [1, 1]]) })
  await txn.commit()
  const offsetsWhileOpen = await settledOffsets(out, [10, 10])

  const seen = { rc: [], ru: [] }
  let rcFetches = 0
  const startReader = async (name, readUncommitted) => {
    const c = kafka.consumer({ groupId: `${args.prefix}-txn-${name}`, readUncommitted, maxWaitTimeInMs: 300, heartbeatInterval: 300, sessionTimeout: 10000, allowAutoTopicCreation: false })
    state.cleanups.push(() => c.disconnect())
    if (name === 'rc') c.on(c.events.FETCH, () => { rcFetches++ })
    await c.connect()
    await c.subscribe({ topic: out, fromBeginning: true })
    await c.run({ eachMessage: async ({ partition, message }) => { seen[name].push({ p: partition, o: Number(message.offset), v: bufToStr(message.value) }) } })
    return c
  }
  state.step('readers')
  const rc = await startReader('rc', false)
  const ru = await startReader('ru', true)
  const has = (name, v) => seen[name].some(s => s.v === v)
  await waitFor('read_uncommitted reader at c3', () => has('ru', 'c3-0-0') && has('ru', 'c3-1-0'), 30000)
  await waitFor('read_committed reader at c2 and c3 of partition 1', () => has('rc', 'c2-0-1') && has('rc', 'c3-1-0'), 30000)
  // The read_committed reader fetched 3 more times after reaching what it
  // may see: it is held at the LSO, not just late.
  const fetchesAtLso = rcFetches
  await waitFor('3 more fetches of the read_committed reader', () => rcFetches >= fetchesAtLso + 3, 10000)
  const rcWhileOpen = seen.rc.map(s => s.v)
  state.step('T2 commit')
  await open.commit()
  await waitFor('read_committed reader at c3 of partition 0', () => has('rc', 'c3-0-0'), 20000)
  const offsetsAfter = await settledOffsets(out, [15, 10])
  await rc.disconnect()
  await ru.disconnect()

  // 2. consume-transform-produce
  state.step('consume-transform-produce')
  const plain = kafka.producer({ allowAutoTopicCreation: false })
  await plain.connect()
  state.cleanups.push(() => plain.disconnect())
  const inputs = msgs('in', [[0, 6], [1, 5]])
  await plain.send({ topic: input, messages: inputs })
  const groupId = `${args.prefix}-txn-ctp-g`
  const t3 = await txProducer('t3')
  // An aborted transaction's sendOffsets commits nothing.
  txn = await t3.transaction()
  await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '3' }] }] })
  await txn.send({ topic: ctp, messages: [{ value: 'ABORTED' }] })
  await txn.abort()
  const committedAfterAbort = await admin.fetchOffsets({ groupId, topics: [input] })

  const ctpConsumer = kafka.consumer({ groupId, heartbeatInterval: 300, sessionTimeout: 10000, maxWaitTimeInMs: 300, allowAutoTopicCreation: false })
  state.cleanups.push(() => ctpConsumer.disconnect())
  let processed = 0
  const commits = []
  await ctpConsumer.connect()
  await ctpConsumer.subscribe({ topic: input, fromBeginning: true })
  await ctpConsumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
      if (batch.messages.length === 0) return
      const t = await t3.transaction()
      try {
        await t.send({ topic: ctp, messages: batch.messages.map(m => ({ key: m.key, value: bufToStr(m.value).toUpperCase() })) })
        const next = String(Number(batch.lastOffset()) + 1)
        await t.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }] })
        await t.commit()
        commits.push({ partition: batch.partition, count: batch.messages.length, offset: next })
      } catch (e) {
        await t.abort()
        throw e
      }
      for (const m of batch.messages) resolveOffset(m.offset)
      processed += batch.messages.length
      await heartbeat()
    },
  })
  await waitFor(`${inputs.length} inputs processed`, () => processed >= inputs.length, 30000)
  await ctpConsumer.disconnect()
  const inputOffsets = await offsetsOf(input)
  // The group's offsets commit with the transaction's markers (after EndTxn
  // answered, on Kafka): poll until they are the input's end offsets.
  let committed
  try {
    await waitFor('the committed offsets at the end of the input', async () => {
      committed = await admin.fetchOffsets({ groupId, topics: [input] })
      return committed[0].partitions.every(p => p.offset === inputOffsets.find(o => o.partition === p.partition).high)
    }, 10000)
  } catch (e) { /* the assertion shows `committed` */ }

  const ctpSeen = []
  const reader = kafka.consumer({ groupId: `${args.prefix}-txn-ctp-reader`, readUncommitted: false, maxWaitTimeInMs: 300, heartbeatInterval: 300, sessionTimeout: 10000, allowAutoTopicCreation: false })
  state.cleanups.push(() => reader.disconnect())
  await reader.connect()
  await reader.subscribe({ topic: ctp, fromBeginning: true })
  await reader.run({ eachMessage: async ({ message }) => { ctpSeen.push({ o: Number(message.offset), k: bufToStr(message.key), v: bufToStr(message.value) }) } })
  await waitFor(`${inputs.length} transformed records read`, () => ctpSeen.length >= inputs.length, 30000)
  const readerFetches = { n: 0 }
  reader.on(reader.events.FETCH, () => { readerFetches.n++ })
  await waitFor('2 more fetches of the ctp reader', () => readerFetches.n >= 2, 10000)
  await reader.disconnect()
  const ctpOffsets = await offsetsOf(ctp)

  return {
    offsetsBeforeOpen, offsetsWhileOpen, offsetsAfter, rcWhileOpen, seen,
    inputs: inputs.map(m => m.value), committedAfterAbort, commits, committed, inputOffsets, ctpSeen, ctpOffsets,
  }
})
