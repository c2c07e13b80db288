// NbdkitServer: an nbdkit process on a Unix socket in a test's temporary directory (loopback
// only: never a TCP address), killed and reaped when the object goes away. nbdkit runs with
// --exit-with-parent, so a crashed test leaves no server behind.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace pcache::testutil {

class NbdkitServer {
public:
    // args: plugin, its parameters and any --filter=..., e.g. {"memory", "16M"}.
    NbdkitServer(std::string socket_path, std::vector<std::string> args)
        : socket_(std::move(socket_path)), args_(std::move(args)) {}
    NbdkitServer(const NbdkitServer&) = delete;
    NbdkitServer& operator=(const NbdkitServer&) = delete;
    ~NbdkitServer() { kill(SIGKILL); }

    // Starts nbdkit and waits (up to 10 s) for its socket. False if it did not come up.
    bool start() {
        ::unlink(socket_.c_str());
        std::vector<std::string> argv = {"nbdkit", "--foreground", "--exit-with-parent", "--unix",
                                         socket_};
        argv.insert(argv.end(), args_.begin(), args_.end());
        pid_ = ::fork();
        if (pid_ == 0) {
            std::vector<char*> a;
            for (auto& s : argv) a.push_back(s.data());
            a.push_back(nullptr);
            ::execvp("nbdkit", a.data());
            ::_exit(127);
        }
        if (pid_ < 0) return false;
        for (int i = 0; i < 200; ++i) {
            struct stat st {};
            if (::stat(socket_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return true;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }
    void kill(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, sig);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }
    // SIGSTOP / SIGCONT: a server that stops answering without closing the connection.
    // kill() only starts a group stop: the thread picked to take SIGSTOP has to run before the
    // other threads are told to stop, and meanwhile one of them can still answer a request (seen
    // on a loaded 2-core machine). pause() returns once the kernel reports the whole process
    // stopped (waitpid with WUNTRACED), and resume() once it reports it running again.
    // Both return false if that report does not come.
    bool pause() const {
        const int status = signal_and_wait(SIGSTOP, WUNTRACED);
        return status >= 0 && WIFSTOPPED(status);
    }
    bool resume() const {
        const int status = signal_and_wait(SIGCONT, WCONTINUED);
        return status >= 0 && WIFCONTINUED(status);
    }
    std::string uri() const { return "nbd+unix:///?socket=" + socket_; }

private:
    // Sends `sig` and returns the wait status of the change it causes, or -1.
    int signal_and_wait(int sig, int wait_flag) const {
        if (pid_ <= 0 || ::kill(pid_, sig) != 0) return -1;
        int status = 0;
        return ::waitpid(pid_, &status, wait_flag) == pid_ ? status : -1;
    }

    std::string socket_;
    std::vector<std::string> args_;
    pid_t pid_ = -1;
};

}  // namespace pcache::testutil
