package org.riverchief.ffi

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Disabled
import org.junit.jupiter.api.MethodOrderer
import org.junit.jupiter.api.Order
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.TestMethodOrder
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.fail
import org.opentest4j.TestAbortedException
import org.riverchief.core.Core
import org.riverchief.core.CoreException
import org.riverchief.core.Crs
import org.riverchief.core.Fix
import org.riverchief.core.FixOutcome
import org.riverchief.core.IssueDraft
import org.riverchief.core.Network
import org.riverchief.core.RecordState
import org.riverchief.core.StatusListener
import org.riverchief.core.StopReason
import org.riverchief.core.SyncOutcome
import org.riverchief.core.SyncState
import org.riverchief.core.SyncStatus
import org.riverchief.core.defaultOptions
import org.riverchief.core.issueCategories
import java.io.ByteArrayInputStream
import java.io.File
import java.nio.file.Files
import java.time.Instant
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference
import javax.imageio.ImageIO
import kotlin.concurrent.thread
import kotlin.math.abs
import kotlin.math.max

/**
 * A patroller's day through the Kotlin bindings only, against a real server behind a loopback
 * proxy that plays the phone's network: log in and mirror the segments; walk QHL-02 with no signal
 * while the listener watches; report muddy piping with a phone-sized photo; a metered sync (records
 * go, the photo waits); a deadline that cuts the photo and a sync that finishes it; a big push
 * cancelled from another thread and finished exactly once. Every check is on what the server (over
 * HTTP, as the duty lead chen) or the core's API and listener report.
 *
 * The steps share one server and one core, in order; a step after a failed one it needs is skipped.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation::class)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class PatrollerDayTest {
    private lateinit var work: File
    private lateinit var server: ServerProcess
    private lateinit var proxy: LoopbackProxy
    private lateinit var chen: ServerUser
    private lateinit var core: Core

    private val failedSteps = mutableListOf<String>()

    // What the steps learn and hand on.
    private lateinit var qhl02Id: String
    private lateinit var qhl02: Line
    private lateinit var patrolId: String
    private lateinit var issueId: String
    private lateinit var original: File
    private lateinit var photoSha: String
    private var photoSize = 0L
    private val listener = Recorder()
    private val testThreads = CopyOnWriteArrayList<Thread>()

    @BeforeAll
    fun start() {
        work = Files.createTempDirectory("riverchief-kotlin-").toFile()
        server = ServerProcess.start(work)
        proxy = LoopbackProxy(server.port)
        chen = ServerUser(server.baseUrl, "chen", server.password)
        core = Core.open(File(work, "phone").path, defaultOptions())
    }

    @AfterAll
    fun stop() {
        if (::core.isInitialized) {
            runCatching { core.clearListener() }
            core.close()
        }
        if (::proxy.isInitialized) proxy.close()
        if (::server.isInitialized) {
            server.close()
            // Kept for a failed run: the server's log, next to Surefire's reports.
            runCatching { server.logFile.copyTo(File("target/riverchief-server.log"), overwrite = true) }
        }
        if (::work.isInitialized) work.deleteRecursively()
    }

    /**
     * Runs one step of the day, unless a step it needs failed (then this one is skipped): by
     * default every earlier step.
     */
    private fun step(name: String, needs: List<String>? = null, body: () -> Unit) {
        val blocking = if (needs == null) failedSteps.toList() else failedSteps.filter { it in needs }
        assumeTrue(blocking.isEmpty()) { "skipped: needs the failed step(s) $blocking" }
        testThreads.add(Thread.currentThread())
        try {
            body()
        } catch (e: TestAbortedException) {
            throw e
        } catch (e: Throwable) {
            failedSteps.add(name)
            throw e
        }
    }

    @Test
    @Order(10)
    fun `logs in through the proxy and mirrors the segments`() = step("login") {
        assertNull(core.me(), "a new data directory has nobody logged in")
        assertTrue(core.status().state is SyncState.SignedOut)

        val user = runBlocking { core.login(proxy.url, "zhangwei", server.password, "Kotlin test phone") }
        assertEquals("zhangwei", user.username)
        assertEquals("patroller", user.role)
        assertEquals(user, core.me())
        assertTrue(proxy.accepted.get() > 0, "the login went through the proxy")

        val outcome = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, outcome.stopped)
        assertTrue(outcome.pulled.toLong() > 0, "the first sync pulls the segments: $outcome")
        assertEquals(0L, outcome.left.mutations.toLong())

        // The mirror agrees with the server.
        val features = chen.json("/api/v1/segments").list("features")
        val mirrored = core.segments()
        assertEquals(features.size, mirrored.size, "every segment is mirrored")
        val feature = features.single { it.obj("properties").str("code") == "QHL-02" }
        val props = feature.obj("properties")
        val seg = mirrored.single { it.code == "QHL-02" }
        assertEquals(props.str("id"), seg.id)
        assertEquals(847.0, seg.chainageStartM, 0.01)
        assertEquals((props["length_m"] as Number).toDouble(), seg.lengthM, 0.5)
        assertEquals(seg.chainageStartM + seg.lengthM, seg.chainageEndM, 0.5)
        assertTrue(seg.river.contains("Qinhuai"), seg.river)
        qhl02Id = seg.id
        qhl02 = Line.fromGeoJson(feature.obj("geometry").list("coordinates"))
        assertEquals(seg.lengthM, qhl02.lengthM, 2.0)

        val status = core.status()
        assertTrue(status.state is SyncState.Idle, "after a good sync: ${status.state}")
        assertEquals(0L, status.pendingMutations.toLong())
        assertNotNull(status.lastSyncMs)
        assertTrue(issueCategories().any { it.code == "piping" })
    }

    @Test
    @Order(20)
    fun `records a patrol and a muddy piping report with no signal`() = step("offline", needs = listOf("login")) {
        core.setListener(listener)
        val first = listener.awaitCount(1, 5_000)[0]
        assertTrue(first.state is SyncState.Idle, "the listener first gets the current status: $first")

        proxy.down()
        val before = core.status()

        val refused = assertThrows<CoreException.Invalid> {
            core.startPatrol(listOf("NO-SUCH-SEGMENT"), null, null)
        }
        assertTrue(refused.field.contains("segment"), "the field is named: ${refused.field}")
        assertEquals(before.pendingMutations, core.status().pendingMutations, "a refusal writes nothing")

        patrolId = core.startPatrol(listOf("QHL-02"), "小雨 light rain", "Kotlin: morning round")
        val t0 = System.currentTimeMillis()
        val outcomes = mutableMapOf<FixOutcome, Int>()
        fun record(i: Double, s: Double, accuracy: Double? = 5.0, mock: Boolean = false): FixOutcome {
            val p = qhl02.at(s)
            val fix = Fix(t0 + (i * 1000).toLong(), p[0], p[1], accuracy, Crs.WGS84, mock)
            return core.recordFix(patrolId, fix).also { outcomes.merge(it, 1, Int::plus) }
        }

        // Up the line in 150 fixes (about 4.3 m apart, one a second) and 46 back, with a duplicate,
        // an inaccurate fix, a stop and a mock fix thrown in.
        val out = 150
        val step = qhl02.lengthM / (out - 1)
        for (i in 0 until out) {
            val s = i * step
            val mock = i == 100
            val outcome = record(i.toDouble(), s, mock = mock)
            assertEquals(if (mock) FixOutcome.KEPT_MOCK else FixOutcome.KEPT, outcome, "fix $i")
            when (i) {
                // The location API delivers the same fix twice.
                20 -> assertEquals(FixOutcome.DROPPED_DUPLICATE, record(20.0, s))
                // A fix 80 m "accurate": worse than the coverage rule.
                40 -> assertEquals(FixOutcome.DROPPED_INACCURATE, record(40.5, s + step / 2, accuracy = 80.0))
                // Half a second later, half a metre on: standing still.
                60 -> assertEquals(FixOutcome.DROPPED_STILL, record(60.5, s + 0.5))
            }
        }
        for (j in 1..46) {
            assertEquals(FixOutcome.KEPT, record((out + j).toDouble(), qhl02.lengthM - j * step, accuracy = null))
        }
        assertEquals(199, outcomes.values.sum())
        assertEquals(mapOf(
            FixOutcome.KEPT to 195, FixOutcome.KEPT_MOCK to 1, FixOutcome.DROPPED_DUPLICATE to 1,
            FixOutcome.DROPPED_INACCURATE to 1, FixOutcome.DROPPED_STILL to 1,
        ), outcomes)

        val info = core.patrol(patrolId)
        assertEquals(196L, info.fixesKept.toLong())
        assertEquals(1L, info.fixesMock.toLong())
        assertEquals(3L, info.fixesDropped.toLong())
        assertEquals(listOf(qhl02Id), info.segmentIds)
        assertNull(info.endedAtMs)
        assertEquals(RecordState.WAITING, info.sync.state)
        val recorded = core.status()
        assertTrue(
            recorded.pendingMutations.toLong() >= before.pendingMutations.toLong() + 4,
            "the start and three full batches of 50 are queued: $recorded",
        )

        // Muddy piping at the toe, 300 m along, with a photo as a phone takes it.
        original = Photos.phoneJpeg(File(work, "IMG_20261204_piping.jpg"))
        assertTrue(original.length() in 4_000_000..9_000_000, "a phone-sized photo: ${original.length()} bytes")
        val at = qhl02.at(300.0)
        issueId = runBlocking { core.reportIssue(IssueDraft(
            segment = "QHL-02", patrolId = patrolId, lon = at[0], lat = at[1], crs = Crs.WGS84,
            category = "piping", severity = 3.toUByte(), outflow = "muddy",
            description = "堤脚管涌，出浑水 muddy piping at the toe", photoPaths = listOf(original.path),
        )) }
        core.finishPatrol(patrolId, "Kotlin: piping reported at K1+147")
        assertNotNull(core.patrol(patrolId).endedAtMs)

        val queued = core.status()
        assertEquals(1L, queued.pendingUrgent.toLong(), "muddy piping is a critical hazard: $queued")
        assertEquals(1L, queued.pendingPhotos.toLong())
        photoSize = queued.pendingPhotoBytes.toLong()
        assertTrue(photoSize in 1 until original.length(), "shrunk at capture: $photoSize of ${original.length()}")
        val row = core.myIssues().single { it.id == issueId }
        assertTrue(row.critical)
        assertEquals(qhl02Id, row.segmentId)
        val rowSync = present(row.sync, "a report of this device has a sync state")
        assertEquals(RecordState.WAITING, rowSync.state)
        assertEquals(1L, rowSync.photosTotal.toLong())

        // No signal: the sync fails as a network failure, and the listener saw it try.
        val mark = listener.events.size
        val e = assertThrows<CoreException.Network> { runBlocking { core.sync(null, Network.UNMETERED) } }
        assertTrue(e.retryable, "no signal is worth trying again")
        assertTrue(e.detail.isNotBlank() && e.detailZh.isNotBlank())
        val offline = listener.awaitState(5_000) { it is SyncState.Offline }
        assertTrue(offline.lastErrorEn != null && offline.lastErrorZh != null, "$offline")
        val during = listener.events.drop(mark).map { it.state }
        val syncing = during.indexOfFirst { it is SyncState.Syncing }
        assertTrue(syncing >= 0, "the listener saw the sync start: $during")
        assertTrue(during.drop(syncing).any { it is SyncState.Offline }, "then offline: $during")
        assertTrue(core.status().state is SyncState.Offline)

        // The listener saw the queue grow while the patroller walked.
        val seen = listener.events.toList()
        assertEquals(0L, seen.first().pendingMutations.toLong(), "nothing was pending before the walk")
        assertTrue(seen.maxOf { it.pendingMutations.toLong() } >= recorded.pendingMutations.toLong(), "$seen")
        assertTrue(seen.any { it.pendingUrgent.toLong() == 1L && it.pendingPhotos.toLong() == 1L })
        listener.assertInOrder()
        listener.assertNeverOn(testThreads)
    }

    @Test
    @Order(30)
    fun `on a metered link the records go and the photo waits`() = step("metered", needs = listOf("login", "offline")) {
        proxy.up()
        val before = core.status()
        val outcome = runBlocking { core.sync(null, Network.METERED) }
        assertEquals(StopReason.PHOTOS_WAIT_FOR_UNMETERED, outcome.stopped, "$outcome")
        assertEquals(0L, outcome.rejected.toLong())
        assertEquals(0L, outcome.photosUploaded.toLong())
        assertEquals(pendingRecords(before), outcome.pushed.toLong() + outcome.duplicates.toLong(), "$outcome / $before")
        assertEquals(0L, outcome.left.mutations.toLong())
        assertEquals(0L, outcome.left.urgent.toLong())
        assertEquals(1L, outcome.left.photos.toLong())
        assertEquals(photoSize, outcome.left.photoBytes.toLong())

        // The server has the whole track, in order, each fix once.
        val info = core.patrol(patrolId)
        val track = chen.json("/api/v1/patrols/$patrolId")
        val points = track.list("points")
        assertEquals(info.fixesKept.toLong(), points.size.toLong())
        assertEquals(info.fixesKept.toLong(), track.obj("patrol").long("point_count"))
        assertNotNull(track.obj("patrol").str("ended_at"))
        assertEquals(listOf(qhl02Id), track.obj("patrol").list("segment_ids"))
        val times = points.map { Instant.parse(it.str("t")).toEpochMilli() }
        assertEquals(times.sorted(), times, "in recorded order")
        assertEquals(times.size, times.toSet().size, "no fix twice")
        assertEquals(RecordState.SENT, info.sync.state)

        // The issue is there, critical; its photo is expected but has not arrived.
        val issue = chen.json("/api/v1/issues/$issueId")
        assertEquals("piping", issue.str("category"))
        assertEquals("muddy", issue.str("outflow"))
        assertEquals(true, issue.field("critical"))
        assertEquals(qhl02Id, issue.str("segment_id"))
        assertEquals(patrolId, issue.str("patrol_id"))
        val chainage = (issue.field("chainage_m") as Number).toDouble()
        assertTrue(abs(chainage - (847 + 300)) < 15, "300 m along QHL-02: $chainage")
        assertEquals(1L, issue.long("photos_expected"))
        assertEquals(0L, issue.long("photos_arrived"))
        photoSha = issue.list("photos").single().str("sha256")!!
        assertEquals(404, chen.head("/api/v1/photos/$photoSha"))

        // The photo the core keeps is the one the report names.
        val local = File(present(core.photoPath(photoSha), "the core keeps the photo"))
        assertEquals(photoSha, sha256Hex(local.readBytes()))
        assertEquals(photoSize, local.length())
        val mine = core.myIssues().single { it.id == issueId }
        assertEquals("reported", mine.status, "the server's status, pulled on the metered link too")
        val row = present(mine.sync, "the report's sync state")
        assertEquals(RecordState.PHOTOS_PENDING, row.state, "$row")
        assertEquals(0L, row.photosSent.toLong())
        assertEquals(1L, row.photosTotal.toLong())

        val after = listener.awaitState(5_000) { it !is SyncState.Syncing }
        assertTrue(after.state is SyncState.Idle, "${after.state}")
        assertEquals(1L, after.pendingPhotos.toLong())
    }

    @Test
    @Order(35)
    @Disabled("The server accepts the mock-location flag but does not store it yet: storing and judging it is issue 15 (authenticity flags). Enable with that work.")
    fun `the server keeps the mock-location flag of a kept mock fix`() = step("mock", needs = listOf("offline", "metered")) {
        val points = chen.json("/api/v1/patrols/$patrolId").list("points")
        assertEquals(core.patrol(patrolId).fixesMock.toLong(), points.count { it.field("mock") == true }.toLong(),
            "the one KEPT_MOCK fix is marked on the server")
    }

    @Test
    @Order(40)
    fun `a deadline stops the sync mid-photo and the next sync finishes it`() = step("deadline", needs = listOf("login", "offline", "metered")) {
        proxy.throttle(150_000)
        val mark = listener.events.size
        val started = System.nanoTime()
        val cut = runBlocking { core.sync(3_000uL, Network.UNMETERED) }
        val tookMs = (System.nanoTime() - started) / 1_000_000
        assertEquals(StopReason.DEADLINE, cut.stopped, "$cut")
        assertTrue(tookMs < 4_500, "stopped at its deadline, took $tookMs ms")
        assertEquals(0L, cut.photosUploaded.toLong())
        assertEquals(1L, cut.left.photos.toLong())
        assertEquals(404, chen.head("/api/v1/photos/$photoSha"))
        val progress = listener.events.drop(mark).mapNotNull { it.upload }
        assertTrue(progress.any { it.sha256 == photoSha && it.total.toLong() == photoSize && it.sent.toLong() > 0 },
            "the listener saw the photo going up: $progress")
        assertTrue(core.status().pendingPhotos.toLong() == 1L)

        // Then at full speed. (Whether the cut upload is resumed rather than sent again, and that
        // nothing goes up after the deadline, is the next test's.) A request the stopped sync left
        // running (FINDINGS.md #4) is let finish first, so the two do not race.
        proxy.unthrottled()
        proxy.awaitQuiet(300, 10_000)
        val done = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, done.stopped, "$done")
        assertEquals(0L, done.left.photos.toLong())
        assertEquals(0L, done.left.mutations.toLong())

        // The server has the photo under the core's hash: the shrunk file, not the original.
        val bytes = present(chen.bytes("/api/v1/photos/$photoSha"), "the server has the photo")
        assertEquals(photoSha, sha256Hex(bytes))
        assertEquals(photoSize, bytes.size.toLong())
        assertTrue(bytes.size < original.length(), "${bytes.size} < ${original.length()}")
        val image = present(ImageIO.read(ByteArrayInputStream(bytes)), "a JPEG the JDK can read")
        assertEquals(2560, max(image.width, image.height), "shrunk to the longest edge of the options")
        assertEquals(1L, chen.json("/api/v1/issues/$issueId").long("photos_arrived"))

        val row = present(core.myIssues().single { it.id == issueId }.sync, "the report's sync state")
        assertEquals(RecordState.SENT, row.state, "$row")
        assertEquals(1L, row.photosSent.toLong())
        val status = listener.awaitState(5_000) { it !is SyncState.Syncing }
        assertTrue(status.state is SyncState.Idle)
        assertEquals(0L, status.pendingPhotos.toLong())
        assertTrue(status.upload == null)

        // The walk covered QHL-02: on the server, and in the mirror the phone shows.
        val timeline = chen.json("/api/v1/segments/QHL-02/coverage")
        val mine = timeline.list("patrols").single { it.str("patrol_id") == patrolId }
        assertEquals(true, mine.field("covers"), "$mine")
        val coverage = core.coverage().single { it.segmentCode == "QHL-02" }
        assertNotNull(coverage.lastCoveredMs, "$coverage")
        listener.assertInOrder()
        listener.assertNeverOn(testThreads)
    }

    @Test
    @Order(45)
    fun `after a deadline the cut upload is resumed, not sent again`() = step("deadline-resume", needs = listOf("login")) {
        sendEverything()
        // Seepage at the foot of the bank, 500 m along, with a photo of about 1.5 MB (kept as taken).
        val photo = Photos.jpeg(File(work, "IMG_20261204_seepage.jpg"), 2560, 1920, 45)
        val at = qhl02.at(500.0)
        val issue = runBlocking { core.reportIssue(IssueDraft(
            segment = "QHL-02", patrolId = null, lon = at[0], lat = at[1], crs = Crs.WGS84,
            category = "seepage", severity = 2.toUByte(), outflow = null,
            description = "背水坡渗水 seepage on the land side", photoPaths = listOf(photo.path),
        )) }
        val size = core.status().pendingPhotoBytes.toLong()
        assertTrue(size > 600_000, "big enough to be cut: $size")

        proxy.throttle(100_000)
        val cut = runBlocking { core.sync(3_000uL, Network.UNMETERED) }
        assertEquals(StopReason.DEADLINE, cut.stopped, "$cut")
        val sha = chen.json("/api/v1/issues/$issue").list("photos").single().str("sha256")!!
        // The sync has returned and abandoned its request (the core hands no more of the body
        // over). What the kernel's send buffer already holds is the OS's to send — on loopback it
        // can be the whole photo — so the signal goes here, as it does on the bank: every
        // connection cut. The server then has part of the photo, never all of it.
        proxy.down()
        Thread.sleep(500) // the server stores what arrived of the cut request
        assertEquals(404, chen.head("/api/v1/photos/$sha"), "the abandoned request did not finish the photo")
        proxy.up()
        proxy.unthrottled()
        Thread.sleep(500) // the server stores what arrived of the cut request
        val done = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, done.stopped, "$done")
        assertEquals(1L, done.photosUploaded.toLong(), "$done")
        assertTrue(done.bytesUploaded.toLong() < size, "resumed, not sent again: ${done.bytesUploaded} of $size")
        assertEquals(sha, sha256Hex(present(chen.bytes("/api/v1/photos/$sha"), "the photo")))
    }

    @Test
    @Order(50)
    fun `a sync cancelled from another thread mid-push sends the rest exactly once`() = step("cancel", needs = listOf("login", "offline", "metered")) {
        sendEverything()
        assertFalse(core.cancelSync(), "no sync is running")
        // An afternoon round: thousands of fixes up and down the line, a big push.
        val round = core.startPatrol(listOf(qhl02Id), null, "Kotlin: afternoon round")
        val t0 = System.currentTimeMillis()
        val n = 3_000
        val legs = qhl02.lengthM
        for (i in 0 until n) {
            val d = (i * 4.0) % (2 * legs)
            val p = qhl02.at(if (d <= legs) d else 2 * legs - d)
            val outcome = core.recordFix(round, Fix(t0 + i * 500L, p[0], p[1], 4.0, Crs.WGS84, false))
            assertTrue(outcome == FixOutcome.KEPT || outcome == FixOutcome.DROPPED_STILL, "fix $i: $outcome")
        }
        core.finishPatrol(round, null)
        val kept = core.patrol(round).fixesKept.toLong()
        assertTrue(kept > n * 0.9, "kept $kept of $n")
        val before = core.status()
        val queued = pendingRecords(before)
        assertTrue(queued >= kept / 50 + 2, "$before")

        // Registered after the sync started, a listener first gets that it is syncing.
        core.clearListener()
        val late = Recorder()
        proxy.throttle(40_000)
        val upBefore = proxy.bytesUp.get()
        val cancelledAt = AtomicReference<Long>()
        val cut = runBlocking {
            val sync = async(Dispatchers.IO) { core.sync(null, Network.UNMETERED) }
            waitUntil(20_000, "the push is on the wire") { proxy.bytesUp.get() - upBefore > 30_000 }
            core.setListener(late)
            late.awaitCount(1, 5_000)
            var answer: Boolean? = null
            thread(name = "app-ui") {
                cancelledAt.set(System.nanoTime())
                answer = core.cancelSync()
            }.join(10_000)
            assertEquals(true, answer, "a sync was running")
            withTimeout(10_000) { sync.await() }
        }
        val stoppedMs = (System.nanoTime() - cancelledAt.get()) / 1_000_000
        assertEquals(StopReason.CANCELLED, cut.stopped, "$cut")
        assertTrue(stoppedMs < 5_000, "stopped $stoppedMs ms after the cancel")
        assertTrue(late.events[0].state is SyncState.Syncing, "first the current state: ${late.events[0]}")
        val afterCut = late.awaitState(5_000) { it !is SyncState.Syncing }
        assertTrue(afterCut.state is SyncState.Idle, "${afterCut.state}")
        assertTrue(cut.left.mutations.toLong() > 0, "the cut push left work: $cut")
        assertEquals(queued, cut.pushed.toLong() + cut.duplicates.toLong() + cut.left.mutations.toLong(), "$cut")
        val (status, partial) = chen.getJson("/api/v1/patrols/$round")
        if (status == 200) assertTrue(partial.list("points").size < kept, "not all of it went")
        else assertEquals(404, status)

        // A request the cancelled sync left running (FINDINGS.md #4) is let finish first.
        proxy.unthrottled()
        proxy.awaitQuiet(300, 10_000)
        val rest = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, rest.stopped, "$rest")
        assertEquals(cut.left.mutations.toLong(), rest.pushed.toLong() + rest.duplicates.toLong(), "$rest")
        assertEquals(0L, rest.rejected.toLong())
        assertEquals(0L, rest.left.mutations.toLong())
        val track = chen.json("/api/v1/patrols/$round")
        val points = track.list("points")
        assertEquals(kept, points.size.toLong(), "every fix once")
        assertEquals(kept, points.map { it.str("t") }.toSet().size.toLong(), "none twice")
        assertEquals(kept, track.obj("patrol").long("point_count"))
        assertNotNull(track.obj("patrol").str("ended_at"))
        assertEquals(RecordState.SENT, core.patrol(round).sync.state)
        late.assertInOrder()
        late.assertNeverOn(testThreads)
        // The morning's patrol was not sent again either.
        assertEquals(core.patrol(patrolId).fixesKept.toLong(), chen.json("/api/v1/patrols/$patrolId").list("points").size.toLong())
    }

    @Test
    @Order(55)
    fun `after a cancel and a cut link the rest goes exactly once`() = step("cancel-quiet", needs = listOf("login")) {
        sendEverything()
        val round = core.startPatrol(listOf("QHL-02"), null, "Kotlin: evening round")
        val t0 = System.currentTimeMillis()
        for (i in 0 until 1_500) {
            val d = (i * 4.0) % (2 * qhl02.lengthM)
            val p = qhl02.at(if (d <= qhl02.lengthM) d else 2 * qhl02.lengthM - d)
            core.recordFix(round, Fix(t0 + i * 500L, p[0], p[1], 4.0, Crs.WGS84, false))
        }
        core.finishPatrol(round, null)
        val kept = core.patrol(round).fixesKept.toLong()
        proxy.throttle(40_000)
        val upBefore = proxy.bytesUp.get()
        val cut = runBlocking {
            val sync = async(Dispatchers.IO) { core.sync(null, Network.UNMETERED) }
            waitUntil(20_000, "the push is on the wire") { proxy.bytesUp.get() - upBefore > 30_000 }
            assertTrue(core.cancelSync())
            withTimeout(10_000) { sync.await() }
        }
        assertEquals(StopReason.CANCELLED, cut.stopped, "$cut")
        // The core hands nothing more over; what the kernel already holds is cut with the link.
        proxy.down()
        proxy.up()
        proxy.unthrottled()
        val rest = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, rest.stopped, "$rest")
        assertEquals(kept, chen.json("/api/v1/patrols/$round").list("points").size.toLong())
    }

    @Test
    @Order(60)
    fun `a second sync while one runs is refused as busy and the first goes on`() = step("busy", needs = listOf("login")) {
        val seen = slowSyncMeetsASecondOne()
        assertTrue(seen.busy is CoreException.Busy, "a second sync on the same data directory: ${seen.busy}")
        assertTrue((seen.busy as CoreException.Busy).retryable)
        assertEquals(StopReason.COMPLETED, seen.first.stopped, "the first sync went on: ${seen.first}")
        assertEquals(0L, seen.first.left.mutations.toLong())
        assertEquals(60, chen.json("/api/v1/patrols/${seen.patrol}").list("points").size)
        assertTrue(seen.watcher.awaitState(5_000) { it !is SyncState.Syncing }.state is SyncState.Idle)
        seen.watcher.assertInOrder()
    }

    @Test
    @Order(61)
    fun `a refused second sync leaves the status syncing`() = step("busy-state", needs = listOf("login")) {
        val seen = slowSyncMeetsASecondOne()
        assertTrue(seen.busy is CoreException.Busy, "${seen.busy}")
        assertTrue(seen.stateDuring is SyncState.Syncing, "status() while the first sync runs: ${seen.stateDuring}")
        val since = seen.seenDuring.indexOfFirst { it is SyncState.Syncing }
        assertTrue(since >= 0, "the listener saw the sync: ${seen.seenDuring}")
        assertTrue(seen.seenDuring.drop(since).all { it is SyncState.Syncing },
            "the listener saw no other state while the first sync ran: ${seen.seenDuring}")
    }

    private class SecondSync(
        val patrol: String,
        val busy: Throwable?,
        val stateDuring: SyncState,
        val seenDuring: List<SyncState>,
        val first: SyncOutcome,
        val watcher: Recorder,
    )

    /**
     * A short patrol pushed through a link slow enough to still be busy with it when a second sync
     * is asked for; what the second call, status() and the listener said meanwhile.
     */
    private fun slowSyncMeetsASecondOne(): SecondSync {
        sendEverything()
        val patrol = core.startPatrol(listOf("QHL-02"), null, "Kotlin: a look at the sluice")
        val t0 = System.currentTimeMillis()
        for (i in 0 until 60) {
            val p = qhl02.at(i * 5.0)
            assertEquals(FixOutcome.KEPT, core.recordFix(patrol, Fix(t0 + i * 1000L, p[0], p[1], 3.0, Crs.WGS84, false)))
        }
        core.finishPatrol(patrol, null)
        val watcher = Recorder()
        core.setListener(watcher)
        watcher.awaitCount(1, 5_000)
        // Slow enough that the push (one request since group commit, a few KB) outlasts the checks.
        proxy.throttle(400)
        val upBefore = proxy.bytesUp.get()
        return runBlocking {
            val sync = async(Dispatchers.IO) { core.sync(null, Network.UNMETERED) }
            try {
                waitUntil(20_000, "the push is on the wire") { proxy.bytesUp.get() - upBefore > 1_000 }
                val busy = runCatching { runBlocking { core.sync(null, Network.UNMETERED) } }.exceptionOrNull()
                val stateDuring = core.status().state
                Thread.sleep(300) // the listener's thread catches up
                val seenDuring = watcher.events.map { it.state }
                assertFalse(sync.isCompleted, "the first sync was still running (the link is slow)")
                proxy.unthrottled()
                SecondSync(patrol, busy, stateDuring, seenDuring, withTimeout(30_000) { sync.await() }, watcher)
            } finally {
                proxy.unthrottled()
            }
        }
    }

    /**
     * Sends whatever earlier steps left queued, at full speed, so that a step measuring one sync
     * measures only its own work.
     */
    private fun sendEverything() {
        proxy.up()
        proxy.unthrottled()
        proxy.awaitQuiet(300, 10_000)
        val outcome = runBlocking { core.sync(null, Network.UNMETERED) }
        assertEquals(StopReason.COMPLETED, outcome.stopped, "$outcome")
        assertEquals(0L, outcome.left.mutations.toLong() + outcome.left.photos.toLong(), "$outcome")
    }

    /** The records a sync will push: pending mutations, urgent ones included. */
    private fun pendingRecords(s: SyncStatus): Long = s.pendingMutations.toLong()

    private fun <T : Any> present(value: T?, what: String): T = value ?: fail("missing: $what")

    private fun waitUntil(timeoutMs: Long, what: String, condition: () -> Boolean) {
        val end = System.nanoTime() + timeoutMs * 1_000_000
        while (!condition()) {
            check(System.nanoTime() < end) { "timed out after $timeoutMs ms waiting until $what" }
            Thread.sleep(20)
        }
    }
}

/** A StatusListener that keeps what it is told, and on which thread. */
class Recorder : StatusListener {
    val events = CopyOnWriteArrayList<SyncStatus>()
    private val threads = CopyOnWriteArrayList<Thread>()
    private val lock = Object()

    override fun onStatus(status: SyncStatus) {
        threads.add(Thread.currentThread())
        events.add(status)
        synchronized(lock) { lock.notifyAll() }
    }

    fun awaitCount(n: Int, timeoutMs: Long): List<SyncStatus> {
        val end = System.currentTimeMillis() + timeoutMs
        synchronized(lock) {
            while (events.size < n) {
                val left = end - System.currentTimeMillis()
                check(left > 0) { "the listener got ${events.size} of $n statuses in $timeoutMs ms" }
                lock.wait(left)
            }
        }
        return events.toList()
    }

    /** Waits until the latest status's state matches, and returns that status. */
    fun awaitState(timeoutMs: Long, matches: (SyncState) -> Boolean): SyncStatus {
        val end = System.currentTimeMillis() + timeoutMs
        synchronized(lock) {
            while (true) {
                val last = events.lastOrNull()
                if (last != null && matches(last.state)) return last
                val left = end - System.currentTimeMillis()
                check(left > 0) { "the listener's state did not come in $timeoutMs ms; last: $last" }
                lock.wait(left)
            }
        }
    }

    /** Every change, once, in order: each status's seq is one more than the one before. */
    fun assertInOrder() {
        val seqs = events.map { it.seq.toLong() }
        for (i in 1 until seqs.size) {
            assertEquals(seqs[i - 1] + 1, seqs[i], "statuses in order and none lost: $seqs")
        }
    }

    fun assertNeverOn(callers: Collection<Thread>) {
        val on = threads.filter { it in callers }
        assertTrue(on.isEmpty(), "the listener was called on the caller's thread: $on")
    }
}
