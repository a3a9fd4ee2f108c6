'use strict'
// kafkajs' admin client, one `--part` per run:
//   topics         createTopics (and again: TOPIC_ALREADY_EXISTS; a bad config,
//                  replication factor 3, a bad name), listTopics,
//                  fetchTopicMetadata, createPartitions (validateOnly; a shrink:
//                  INVALID_PARTITIONS), fetchTopicOffsets,
//                  fetchTopicOffsetsByTimestamp, describeCluster,
//                  describeConfigs, deleteTopics (and an unknown topic)
//   groups         listGroups, describeGroups, fetchOffsets, setOffsets,
//                  resetOffsets, deleteGroups (and an unknown group)
//   alter-configs  alterConfigs on a topic (AlterConfigs), read back with describeConfigs
//   delete-records deleteTopicRecords (DeleteRecords), read back with fetchTopicOffsets
//   describe-acls  describeAcls (DescribeAcls; no authorizer: SECURITY_DISABLED)
// Every call's answer, or its error as data, is in the printed JSON.

const { ConfigResourceTypes, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = require('kafkajs')
const { makeKafka, waitFor, main, describeError } = require('./common')

const BASE_TS = 1700000000000

let stepFn = () => {}
let attempts = 0

// The call's answer as {ok}, or its error as {error}; with its duration.
async function attempt (fn) {
  stepFn(`attempt #${++attempts}`)
  const began = Date.now()
  try {
    return { ok: await fn(), ms: Date.now() - began }
  } catch (e) {
    return { error: describeError(e), ms: Date.now() - began }
  }
}

function configMap (describeAnswer) {
  const out = {}
  for (const r of describeAnswer.resources) {
    out[r.resourceName] = { errorCode: r.errorCode, errorMessage: r.errorMessage, entries: {} }
    for (const e of r.configEntries) {
      out[r.resourceName].entries[e.configName] = { value: e.configValue, readOnly: e.readOnly, isDefault: e.isDefault, configSource: e.configSource, isSensitive: e.isSensitive }
    }
  }
  return out
}

async function produceTimestamped (kafka, topic, partitions, perPartition) {
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  try {
    const messages = []
    for (let p = 0; p < partitions; p++) {
      for (let i = 0; i < perPartition; i++) messages.push({ partition: p, key: `k${p}-${i}`, value: `v${p}-${i}`, timestamp: String(BASE_TS + i * 1000) })
    }
    return await producer.send({ topic, messages })
  } finally {
    await producer.disconnect()
  }
}

async function topics (kafka, admin, args, state, fail) {
  const r = {}
  const topic = `${args.prefix}-admin`
  const other = `${args.prefix}-admin-compact`
  state.step('createTopics')
  r.createTopics = await attempt(() => admin.createTopics({
    topics: [
      { topic, numPartitions: 2 },
      { topic: other, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }, { name: 'retention.ms', value: '3600000' }] },
    ],
    waitForLeaders: true,
  }))
  // kafkajs answers `false` when every topic already exists (it swallows
  // TOPIC_ALREADY_EXISTS); with an invalid topic in the same request the
  // aggregate error shows the code of the duplicate.
  r.createDuplicate = await attempt(() => fail.createTopics({ topics: [{ topic, numPartitions: 2 }] }))
  r.createDuplicateMixed = await attempt(() => fail.createTopics({ topics: [{ topic, numPartitions: 3 }, { topic: `${args.prefix}-admin-bad`, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'no-such-policy' }] }] }))
  r.createInvalid = await attempt(() => fail.createTopics({ topics: [{ topic: `${args.prefix}-admin-bad`, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'no-such-policy' }] }] }))
  r.createValidateOnly = await attempt(() => admin.createTopics({ topics: [{ topic: `${args.prefix}-admin-vo`, numPartitions: 1 }], validateOnly: true, waitForLeaders: false }))
  r.createReplication3 = await attempt(() => fail.createTopics({ topics: [{ topic: `${args.prefix}-admin-rf3`, numPartitions: 1, replicationFactor: 3 }] }))
  r.createBadName = await attempt(() => fail.createTopics({ topics: [{ topic: `${args.prefix}-admin/bad`, numPartitions: 1 }] }))
  r.listTopics = await attempt(async () => (await admin.listTopics()).filter(t => t.startsWith(args.prefix)).sort())

  state.step('createPartitions')
  r.createPartitionsValidateOnly = await attempt(() => admin.createPartitions({ topicPartitions: [{ topic, count: 5 }], validateOnly: true }))
  r.createPartitions = await attempt(() => admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] }))
  r.createPartitionsShrink = await attempt(() => fail.createPartitions({ topicPartitions: [{ topic, count: 1 }] }))
  r.createPartitionsUnknown = await attempt(() => fail.createPartitions({ topicPartitions: [{ topic: `${args.prefix}-admin-missing`, count: 2 }] }))
  r.fetchTopicMetadata = await attempt(async () => {
    const md = await waitFor('3 partitions in the metadata', async () => {
      const m = await admin.fetchTopicMetadata({ topics: [topic] })
      return m.topics[0].partitions.length === 3 ? m : null
    }, 10000)
    return md.topics.map(t => ({ name: t.name, partitions: t.partitions.map(p => ({ ...p })).sort((x, y) => x.partitionId - y.partitionId) }))
  })
  r.fetchTopicMetadataUnknown = await attempt(() => fail.fetchTopicMetadata({ topics: [`${args.prefix}-admin-missing`] }))

  state.step('offsets')
  r.produce = await attempt(() => produceTimestamped(kafka, topic, 3, 5))
  r.fetchTopicOffsets = await attempt(async () => (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition))
  r.byTimestamp = {}
  for (const [name, ts] of [['before', BASE_TS - 1], ['exact2', BASE_TS + 2000], ['between', BASE_TS + 2500], ['after', BASE_TS + 999999]]) {
    r.byTimestamp[name] = await attempt(async () => (await admin.fetchTopicOffsetsByTimestamp(topic, ts)).sort((x, y) => x.partition - y.partition))
  }
  r.byTimestampNone = await attempt(async () => (await admin.fetchTopicOffsetsByTimestamp(topic)).sort((x, y) => x.partition - y.partition))

  state.step('describeCluster')
  r.describeCluster = await attempt(() => admin.describeCluster())
  state.step('describeConfigs')
  r.describeConfigs = await attempt(async () => configMap(await admin.describeConfigs({
    resources: [
      { type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['cleanup.policy', 'retention.ms', 'max.message.bytes'] },
      { type: ConfigResourceTypes.TOPIC, name: other, configNames: ['cleanup.policy', 'retention.ms'] },
    ],
    includeSynonyms: false,
  })))
  r.describeConfigsAll = await attempt(async () => {
    const m = configMap(await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false }))
    return { names: Object.keys(m[topic].entries).sort(), errorCode: m[topic].errorCode }
  })
  r.describeConfigsBroker = await attempt(async () => {
    const ans = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.BROKER, name: '1', configNames: ['num.partitions', 'auto.create.topics.enable'] }], includeSynonyms: false })
    return configMap(ans)
  })
  r.describeConfigsUnknown = await attempt(() => fail.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: `${args.prefix}-admin-missing` }], includeSynonyms: false }))

  state.step('deleteTopics')
  r.deleteTopics = await attempt(() => admin.deleteTopics({ topics: [topic, other] }))
  r.listTopicsAfterDelete = await attempt(() => waitFor('the deleted topics gone from listTopics', async () => {
    const left = (await admin.listTopics()).filter(t => t === topic || t === other)
    return left.length === 0 ? { left } : null
  }, 15000))
  r.deleteTopicsUnknown = await attempt(() => fail.deleteTopics({ topics: [`${args.prefix}-admin-missing`] }))
  return r
}

async function groups (kafka, admin, args, state, fail) {
  const r = {}
  const topic = `${args.prefix}-grp`
  const groupId = `${args.prefix}-grp-g`
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })
  await produceTimestamped(kafka, topic, 3, 5)
  const consumer = kafka.consumer({ groupId, heartbeatInterval: 300, sessionTimeout: 10000, maxWaitTimeInMs: 500, allowAutoTopicCreation: false })
  let consumed = 0
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({ eachMessage: async () => { consumed++ } })
  await waitFor('the group consumed 15 records', () => consumed >= 15, 30000)
  r.describeGroupsStable = await attempt(async () => (await admin.describeGroups([groupId])).groups.map(g => ({ ...g, members: g.members.map(m => ({ memberId: m.memberId, clientId: m.clientId, clientHost: m.clientHost, hasMetadata: m.memberMetadata.length > 0, hasAssignment: m.memberAssignment.length > 0 })) })))
  r.setOffsetsWhileRunning = await attempt(() => admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '1' }] }))
  r.deleteGroupsWhileRunning = await attempt(() => fail.deleteGroups([groupId]))
  await consumer.disconnect()
  r.listGroups = await attempt(async () => (await admin.listGroups()).groups.filter(g => g.groupId.startsWith(args.prefix)))
  r.describeGroups = await attempt(async () => (await admin.describeGroups([groupId, `${args.prefix}-admin-nogroup`])).groups)
  r.fetchOffsets = await attempt(() => admin.fetchOffsets({ groupId, topics: [topic] }))
  r.fetchOffsetsAll = await attempt(() => admin.fetchOffsets({ groupId }))
  r.fetchOffsetsUnknownGroup = await attempt(() => admin.fetchOffsets({ groupId: `${args.prefix}-admin-nogroup`, topics: [topic] }))
  r.setOffsets = await attempt(() => admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '1' }, { partition: 2, offset: '3' }] }))
  r.fetchOffsetsAfterSet = await attempt(() => admin.fetchOffsets({ groupId, topics: [topic] }))
  r.resetOffsetsEarliest = await attempt(() => admin.resetOffsets({ groupId, topic, earliest: true }))
  r.fetchOffsetsAfterResetEarliest = await attempt(() => admin.fetchOffsets({ groupId, topics: [topic] }))
  r.resetOffsetsLatest = await attempt(() => admin.resetOffsets({ groupId, topic }))
  r.fetchOffsetsAfterResetLatest = await attempt(() => admin.fetchOffsets({ groupId, topics: [topic] }))
  r.deleteGroups = await attempt(() => admin.deleteGroups([groupId]))
  r.deleteGroupsUnknown = await attempt(() => fail.deleteGroups([`${args.prefix}-admin-nogroup`]))
  r.listGroupsAfterDelete = await attempt(async () => (await admin.listGroups()).groups.filter(g => g.groupId.startsWith(args.prefix)))

  await admin.deleteTopics({ topics: [topic] })
  return r
}

async function alterConfigs (kafka, admin, args, state, fail) {
  const r = {}
  const topic = `${args.prefix}-alter`
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }], waitForLeaders: true })
  const describe = async () => configMap(await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms', 'cleanup.policy', 'max.message.bytes'] }], includeSynonyms: false }))[topic].entries
  r.before = await describe()
  r.validateOnly = await attempt(() => admin.alterConfigs({ validateOnly: true, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '1234567' }] }] }))
  r.afterValidateOnly = await describe()
  // AlterConfigs (not incremental) replaces the whole set: cleanup.policy,
  // not named here, returns to its default.
  r.alter = await attempt(() => admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '86400000' }, { name: 'max.message.bytes', value: '200000' }] }] }))
  r.after = r.alter.error ? { ok: await describe() } : await attempt(() => waitFor('retention.ms altered', async () => { const d = await describe(); return d['retention.ms'].value === '86400000' ? d : null }, 10000))
  r.alterInvalid = await attempt(() => fail.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: 'not-a-number' }] }] }))
  r.alterUnknownTopic = await attempt(() => fail.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: `${args.prefix}-alter-missing`, configEntries: [{ name: 'retention.ms', value: '1000' }] }] }))
  r.afterInvalid = await describe()
  await admin.deleteTopics({ topics: [topic] })
  return r
}

async function deleteRecords (kafka, admin, args, state, fail) {
  const r = {}
  const topic = `${args.prefix}-delrec`
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
  await produceTimestamped(kafka, topic, 2, 10)
  r.before = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition)
  r.delete = await attempt(() => admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }, { partition: 1, offset: '-1' }] }))
  r.after = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition)
  await fail.fetchTopicMetadata({ topics: [topic] }) // deleteTopicRecords needs the topic's metadata loaded
  r.deleteBeyondEnd = await attempt(() => fail.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '50' }] }))
  r.afterBeyondEnd = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition)
  // A consumer from the beginning starts at the new log start offset.
  const consumer = kafka.consumer({ groupId: `${args.prefix}-delrec-g`, heartbeatInterval: 300, sessionTimeout: 10000, maxWaitTimeInMs: 500, allowAutoTopicCreation: false })
  const seen = []
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({ eachMessage: async ({ partition, message }) => { seen.push({ p: partition, o: Number(message.offset) }) } })
  await waitFor('partition 0 read from offset 4 to 9', () => seen.some(s => s.p === 0 && s.o === 9), 30000)
  await consumer.disconnect()
  r.consumed = seen.sort((x, y) => x.p - y.p || x.o - y.o)
  await admin.deleteTopics({ topics: [topic] })
  return r
}

async function describeAcls (kafka, admin, args, state, fail) {
  const r = {}
  r.describeAcls = await attempt(() => fail.describeAcls({
    resourceType: AclResourceTypes.TOPIC, resourceName: `${args.prefix}-acl`, resourcePatternType: ResourcePatternTypes.LITERAL,
    principal: 'User:alice', host: '*', operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY,
  }))
  return r
}

const PARTS = { topics, groups, 'alter-configs': alterConfigs, 'delete-records': deleteRecords, 'describe-acls': describeAcls }

main(async (args, state) => {
  const part = PARTS[args.part]
  if (!part) throw new Error(`unknown --part ${args.part}; one of ${Object.keys(PARTS).join(', ')}`)
  stepFn = state.step
  const kafka = makeKafka(args)
  const admin = kafka.admin()
  await admin.connect()
  state.cleanups.push(() => admin.disconnect())
  // For the calls expected to fail: kafkajs retries retriable errors
  // (UNKNOWN_TOPIC_OR_PARTITION, ...) 8 times; this one gives up after 1.
  const fail = makeKafka(args, 'strom-kafkajs-test-fail', { retries: 1 }).admin()
  await fail.connect()
  state.cleanups.push(() => fail.disconnect())
  return part(kafka, admin, args, state, fail)
})
