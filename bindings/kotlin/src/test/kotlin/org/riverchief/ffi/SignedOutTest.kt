package org.riverchief.ffi

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Disabled
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import org.riverchief.core.Core
import org.riverchief.core.CoreException
import org.riverchief.core.Network
import org.riverchief.core.SyncState
import org.riverchief.core.defaultOptions
import java.io.File
import java.util.concurrent.TimeUnit

/** A phone nobody has logged in on yet: no server needed. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class SignedOutTest {
    @Test
    fun `a sync before any login says nobody is logged in`(@TempDir dir: File) {
        // A server address in the options (an app that ships with its server), but no login.
        Core.open(dir.path, defaultOptions().copy(serverUrl = "http://127.0.0.1:9")).use { core ->
            assertNull(core.me())
            assertTrue(core.status().state is SyncState.SignedOut)
            val e = assertThrows<CoreException.NotLoggedIn> { runBlocking { core.sync(null, Network.UNMETERED) } }
            assertTrue(!e.retryable)
            assertTrue(core.status().state is SyncState.SignedOut, "${core.status().state}")
        }
    }

    @Test
    fun `a sync before any login and without a server says nobody is logged in`(@TempDir dir: File) {
        Core.open(dir.path, defaultOptions()).use { core ->
            val e = assertThrows<CoreException.NotLoggedIn> { runBlocking { core.sync(null, Network.UNMETERED) } }
            assertTrue(!e.detail.contains("--server"), "a message fit to show on a phone: ${e.detail}")
            assertTrue(core.status().state is SyncState.SignedOut, "${core.status().state}")
        }
    }

    @Test
    fun `an empty data directory name is refused`() {
        val e = assertThrows<CoreException.Invalid> { Core.open(" ", defaultOptions()) }
        assertEquals("data_dir", e.field)
    }
}
