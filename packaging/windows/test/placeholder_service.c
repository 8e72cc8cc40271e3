/*
 * Stand-in for botward.exe when testing the packaging without the real
 * binary (scripts/check-packaging.sh). As "botward.exe service run ..." it is
 * a minimal Windows service that reports RUNNING and stops on request, so an
 * install can start it and an uninstall can stop it; any other command line
 * prints a line and exits 0.
 *
 *   x86_64-w64-mingw32-gcc -O2 -s -o botward.exe placeholder_service.c
 */
#include <stdio.h>
#include <string.h>
#include <windows.h>

static SERVICE_STATUS_HANDLE status_handle;
static SERVICE_STATUS status;
static HANDLE stop_event;

static void report(DWORD state)
{
    status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    status.dwCurrentState = state;
    status.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP : 0;
    status.dwWin32ExitCode = NO_ERROR;
    SetServiceStatus(status_handle, &status);
}

static DWORD WINAPI handler(DWORD control, DWORD type, LPVOID data, LPVOID context)
{
    (void)type; (void)data; (void)context;
    if (control == SERVICE_CONTROL_STOP) {
        report(SERVICE_STOP_PENDING);
        SetEvent(stop_event);
    }
    return NO_ERROR;
}

static void WINAPI service_main(DWORD argc, LPSTR *argv)
{
    (void)argc; (void)argv;
    status_handle = RegisterServiceCtrlHandlerExA("botward", handler, NULL);
    if (!status_handle)
        return;
    stop_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    report(SERVICE_RUNNING);
    WaitForSingleObject(stop_event, INFINITE);
    report(SERVICE_STOPPED);
    /* Exit at once, so the installer finds the file no longer in use. */
    ExitProcess(0);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "service") == 0 && strcmp(argv[2], "run") == 0) {
        SERVICE_TABLE_ENTRYA table[] = {{"botward", service_main}, {NULL, NULL}};
        return StartServiceCtrlDispatcherA(table) ? 0 : 1;
    }
    puts("botward packaging placeholder");
    return 0;
}
