'use strict'
// A consumer group of two with rebalances: A joins alone and consumes the
// first records; B joins (A rejoins, the four partitions are split), while
// records keep being produced; B leaves and A takes all partitions again;
// then A leaves too. Commits are kafkajs' auto-commit (after each batch).
// Prints every assignment each member got (GROUP_JOIN events), every record
// each consumed, the group's description while both were members, and the
// committed offsets and end offsets after both stopped.

const { AssignerProtocol } = require('kafkajs')
const { makeKafka, waitFor, sleep, main, bufToStr } = require('./common')

const PARTITIONS = 4

main(async (args, state) => {
  const kafka = makeKafka(args)
  const topic = `${args.prefix}-group`
  const groupId = `${args.prefix}-group-g`
  const admin = kafka.admin()
  await admin.connect()
  state.cleanups.push(() => admin.disconnect())
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true })

  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  state.cleanups.push(() => producer.disconnect())
  const produced = []
  let seq = 0
  const produce = async (n, tag) => {
    const messages = []
    for (let i = 0; i < n; i++, seq++) messages.push({ partition: seq % PARTITIONS, key: `k${seq}`, value: `${tag}-${seq}` })
    await producer.send({ topic, messages })
    for (const m of messages) produced.push(m.value)
  }

  const members = {}
  const startMember = async name => {
    const m = { name, assignments: [], consumed: [], crashed: null }
    members[name] = m
    const consumer = kafka.consumer({ groupId, heartbeatInterval: 300, sessionTimeout: 10000, rebalanceTimeout: 20000, maxWaitTimeInMs: 500, allowAutoTopicCreation: false })
    m.consumer = consumer
    consumer.on(consumer.events.GROUP_JOIN, e => {
      m.assignments.push({ memberId: e.payload.memberId, isLeader: e.payload.isLeader, protocol: e.payload.groupProtocol,
        partitions: [...(e.payload.memberAssignment[topic] || [])].sort((a, b) => a - b), at: Date.now() })
      state.step(`${name} joined: ${JSON.stringify(e.payload.memberAssignment)}`)
    })
    consumer.on(consumer.events.CRASH, e => { m.crashed = String(e.payload.error) })
    state.cleanups.push(() => consumer.disconnect())
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        m.consumed.push({ p: partition, o: Number(message.offset), v: bufToStr(message.value), at: Date.now() })
      },
    })
    return m
  }
  const latest = m => m.assignments.length ? m.assignments[m.assignments.length - 1].partitions : null
  const consumedValues = () => new Set(Object.values(members).flatMap(m => m.consumed.map(c => c.v)))
  const allConsumed = () => { const got = consumedValues(); return produced.every(v => got.has(v)) }

  // 1. A alone.
  await produce(20, 'before-a')
  state.step('starting A')
  const a = await startMember('A')
  await waitFor('A assigned all partitions', () => (latest(a) || []).length === PARTITIONS, 30000)
  await waitFor('A consumed the first records', allConsumed, 20000)
  const phase1 = { a: latest(a), consumedByA: a.consumed.length }

  // 2. B joins while records are produced.
  const aJoinsBefore = a.assignments.length
  let producing = true
  const producerLoop = (async () => {
    let batches = 0
    while (producing || batches < 3) { await produce(4, 'during'); batches++; await sleep(100) }
    return batches
  })()
  state.step('starting B')
  const b = await startMember('B')
  let split
  try {
    split = await waitFor('A and B splitting the partitions', () => {
      const pa = latest(a); const pb = latest(b)
      if (a.assignments.length <= aJoinsBefore || !pb || !pa.length || !pb.length) return null
      return pa.length + pb.length === PARTITIONS && new Set([...pa, ...pb]).size === PARTITIONS ? { a: pa, b: pb } : null
    }, 40000)
  } finally {
    producing = false
  }
  const duringBatches = await producerLoop
  await produce(8, 'after-split')
  await waitFor('every record consumed by A or B', allConsumed, 20000)
  const described = await admin.describeGroups([groupId])
  const group = described.groups[0]
  const description = {
    state: group.state, protocolType: group.protocolType, protocol: group.protocol, errorCode: group.errorCode,
    members: group.members.map(mem => ({
      memberId: mem.memberId, clientId: mem.clientId,
      assignment: (AssignerProtocol.MemberAssignment.decode(mem.memberAssignment) || { assignment: {} }).assignment[topic] || [],
    })),
  }
  const consumedByBAtSplit = b.consumed.length

  // 3. B leaves: A takes every partition again.
  const aJoinsBeforeLeave = a.assignments.length
  state.step('stopping B')
  await b.consumer.disconnect()
  state.step('B stopped')
  await waitFor('A assigned all partitions after B left', () => a.assignments.length > aJoinsBeforeLeave && latest(a).length === PARTITIONS, 30000)
  await produce(12, 'after-leave')
  await waitFor('A consumed the records produced after B left', allConsumed, 20000)

  // 4. A leaves; the committed offsets must be the end offsets.
  state.step('stopping A')
  await a.consumer.disconnect()
  const endOffsets = await admin.fetchTopicOffsets(topic)
  const committed = await admin.fetchOffsets({ groupId, topics: [topic] })
  const afterStop = await admin.describeGroups([groupId])

  const strip = m => ({ name: m.name, assignments: m.assignments, consumed: m.consumed, crashed: m.crashed })
  return {
    topic, groupId, produced, phase1, split, duringBatches, description, consumedByBAtSplit,
    members: { A: strip(a), B: strip(b) },
    trace: state.trace, endOffsets, committed, stateAfterStop: afterStop.groups[0].state, membersAfterStop: afterStop.groups[0].members.length,
  }
})
