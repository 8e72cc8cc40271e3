/*
 * bcryptprimitives.dll for Wine prefixes that lack it.
 *
 * Rust's standard library on Windows draws its random numbers from
 * ProcessPrng in bcryptprimitives.dll, which Windows 10 and later ship and
 * Wine 8.0 does not: without it every Rust executable fails to load. This
 * DLL provides the one export, backed by the system RNG of bcrypt.dll.
 * scripts/windows.sh builds it with MinGW and puts it in the test prefix's
 * system32. It is a test fixture, never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
