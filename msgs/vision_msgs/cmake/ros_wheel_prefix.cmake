# Helpers for building a rosidl interface package against ROS 2 wheels installed from PyPI
# (ros-rclpy, ros-std-msgs, ... in a virtual environment) instead of a ROS 2 distribution.
#
# 1. The wheels install an ament prefix (share/, lib/, include/) into the environment's data
#    directory (the venv root). AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH must name it while CMake
#    configures, else rosidl finds no type support ("No 'rosidl_typesupport_c' found").
# 2. The message wheels export `<pkg>::<pkg>__rosidl_generator_py` targets whose
#    INTERFACE_INCLUDE_DIRECTORIES name the wheel builder's Python include directory, which does
#    not exist here; fix_ros_wheel_python_targets() points them at this interpreter's Python and
#    NumPy include directories.
# On a sourced ROS 2 distribution both steps are harmless no-ops.

if(NOT Python3_EXECUTABLE)
  if(Python_EXECUTABLE)
    set(Python3_EXECUTABLE "${Python_EXECUTABLE}")
  elseif(DEFINED ENV{VIRTUAL_ENV} AND EXISTS "$ENV{VIRTUAL_ENV}/bin/python")
    set(Python3_EXECUTABLE "$ENV{VIRTUAL_ENV}/bin/python")
  endif()
endif()
set(Python3_FIND_VIRTUALENV FIRST)
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)

execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c "import sysconfig; print(sysconfig.get_paths()['data'])"
  OUTPUT_VARIABLE ROS_WHEEL_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _rwp_rc)
if(NOT _rwp_rc EQUAL 0 OR NOT EXISTS "${ROS_WHEEL_PREFIX}")
  message(FATAL_ERROR "cannot determine the Python environment prefix of ${Python3_EXECUTABLE}")
endif()

if(EXISTS "${ROS_WHEEL_PREFIX}/share/ament_cmake/cmake")
  message(STATUS "ROS 2 wheels prefix: ${ROS_WHEEL_PREFIX}")
  list(PREPEND CMAKE_PREFIX_PATH "${ROS_WHEEL_PREFIX}")
  if(DEFINED ENV{AMENT_PREFIX_PATH} AND NOT "$ENV{AMENT_PREFIX_PATH}" STREQUAL "")
    set(ENV{AMENT_PREFIX_PATH} "${ROS_WHEEL_PREFIX}:$ENV{AMENT_PREFIX_PATH}")
  else()
    set(ENV{AMENT_PREFIX_PATH} "${ROS_WHEEL_PREFIX}")
  endif()
endif()

# No lint tests for generated code in this build.
set(BUILD_TESTING OFF CACHE BOOL "" FORCE)

function(fix_ros_wheel_python_targets)
  get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    if(_t MATCHES "__rosidl_generator_py$")
      get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
      set(_fixed "")
      set(_changed FALSE)
      foreach(_d IN LISTS _inc)
        if(_d AND NOT EXISTS "${_d}")
          set(_changed TRUE)
        else()
          list(APPEND _fixed "${_d}")
        endif()
      endforeach()
      if(_changed)
        list(APPEND _fixed ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
        list(REMOVE_DUPLICATES _fixed)
        set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
      endif()
    endif()
  endforeach()
endfunction()
